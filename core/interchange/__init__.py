"""The ``msgrun/1`` interchange format: strict reading and atomic import."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from core.interchange.files import anchor_folder
from core.interchange.parse import ORGANISATION_ID, ParsedFile, Progress, decode, parse_document
from core.interchange.reader import Problem
from core.interchange.references import check_references
from core.interchange.write import write
from core.storage.database import Database
from core.storage.models import Organisation, table_of
from core.unsubscribe.records import forget_all


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
    replace_organisation: bool = False,
    base: str | None = None,
) -> ImportOutcome:
    """Check a whole file and store it in one transaction, or store nothing.

    With ``dry_run`` every check is made (stored references included) and
    nothing is written. A database holds one organisation: a file of another
    one is refused unless ``replace_organisation``. A relative ``documents_folder``
    is taken relative to ``base`` (the file's folder), else to the current folder.
    """
    document, problems = decode(text)
    if problems:
        return ImportOutcome(problems=problems)
    return import_document(
        database,
        document,
        progress,
        dry_run=dry_run,
        replace_organisation=replace_organisation,
        base=base,
    )


def import_document(
    database: Database,
    document: Any,
    progress: Progress | None = None,
    *,
    dry_run: bool = False,
    replace_organisation: bool = False,
    base: str | None = None,
) -> ImportOutcome:
    """``import_text`` for a document already decoded from JSON."""
    anchor_folder(document, base if base is not None else os.getcwd())
    parsed, problems = parse_document(document, progress)
    with database.connect() as connection:
        problems = problems + check_references(connection, parsed)
        other = another_organisation(connection, parsed)
        if not replace_organisation:
            problems += other
        if problems or dry_run:
            connection.rollback()
            return ImportOutcome(
                problems=sorted_problems(problems), counts={} if problems else parsed.counts()
            )
        if other:
            # Another organisation's unsubscribes name nobody of this one (inbox.md); the
            # database's own secret stays.
            forget_all(connection)
        write(connection, parsed, progress)
    return ImportOutcome(counts=parsed.counts())


def another_organisation(connection: Connection, parsed: ParsedFile) -> list[Problem]:
    """The file's organisation is not the one stored: a database holds one."""
    if parsed.organisation is None or parsed.organisation.get("name") is None:
        return []
    organisation = table_of(Organisation)
    stored = connection.execute(
        select(organisation.c.name).where(organisation.c.id == ORGANISATION_ID)
    ).scalar()
    name = parsed.organisation["name"]
    if stored is None or stored == name:
        return []
    return [
        Problem(
            "organisation.name",
            f"{name!r} is not this database's organisation {stored!r}: a database holds "
            "one organisation (--replace-organisation replaces it)",
        )
    ]


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
