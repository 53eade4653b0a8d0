"""The ``msgrun/1`` interchange format: strict reading and atomic import."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.interchange.parse import Progress, decode, parse_document
from core.interchange.reader import Problem
from core.interchange.references import check_references
from core.interchange.write import write
from core.storage.database import Database


@dataclass
class ImportOutcome:
    """What an import did: the problems that stopped it, or what it stored."""

    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


class UnreadableFile(OSError):
    """The file could not be read at all (missing, a folder, no permission)."""


def read_file(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableFile(f"{path}: is a folder, not a file") from None
    except OSError as error:
        raise UnreadableFile(f"{path}: cannot be read ({error.strerror})") from None


def import_text(
    database: Database,
    text: str | bytes,
    progress: Progress | None = None,
    *,
    dry_run: bool = False,
) -> ImportOutcome:
    """Check a whole file and store it in one transaction, or store nothing.

    With ``dry_run`` every check is made (stored references included) and
    nothing is written.
    """
    document, problems = decode(text)
    if problems:
        return ImportOutcome(problems=problems)
    return import_document(database, document, progress, dry_run=dry_run)


def import_document(
    database: Database,
    document: Any,
    progress: Progress | None = None,
    *,
    dry_run: bool = False,
) -> ImportOutcome:
    """``import_text`` for a document already decoded from JSON."""
    parsed, problems = parse_document(document, progress)
    with database.connect() as connection:
        problems = problems + check_references(connection, parsed)
        if problems or dry_run:
            connection.rollback()
            return ImportOutcome(
                problems=sorted_problems(problems), counts={} if problems else parsed.counts()
            )
        write(connection, parsed, progress)
    return ImportOutcome(counts=parsed.counts())


def sorted_problems(problems: list[Problem]) -> list[Problem]:
    """In file order where paths allow it; the same problem once."""
    seen: set[Problem] = set()
    unique = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            unique.append(problem)
    return unique


__all__ = [
    "ImportOutcome",
    "Problem",
    "UnreadableFile",
    "import_document",
    "import_text",
    "read_file",
]
