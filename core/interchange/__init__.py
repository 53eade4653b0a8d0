"""The ``msgrun/1`` interchange format: strict reading and atomic import."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from core.interchange import position, scratch
from core.interchange.load import FileLoader
from core.interchange.parse import Progress, decode
from core.interchange.reader import Problem
from core.interchange.stream import JsonSyntaxError, LoneSurrogate
from core.storage.database import Database

BOM = b"\xef\xbb\xbf"
# A file that is not JSON is read whole once more for the json module's words
# (with line and column) up to this size; a larger one is read again in chunks.
WHOLE_READ_LIMIT = 64 * 2**20
NESTED_TOO_DEEPLY = "not a msgrun file: JSON nested too deeply to read"


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


def open_file(path: str | Path) -> BinaryIO:
    """The file opened for reading, or ``UnreadableFile`` saying why not."""
    try:
        if Path(path).is_dir():
            raise IsADirectoryError
        return open(path, "rb")
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
    content = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return import_stream(
        database,
        io.BytesIO(content),
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
    return import_text(
        database,
        json.dumps(document, ensure_ascii=False, default=str),
        progress,
        dry_run=dry_run,
        replace_organisation=replace_organisation,
        base=base,
    )


def import_stream(
    database: Database,
    file: BinaryIO,
    progress: Progress | None = None,
    *,
    dry_run: bool = False,
    replace_organisation: bool = False,
    base: str | None = None,
) -> ImportOutcome:
    """``import_text`` for a seekable binary file, read a record at a time.

    Each record is checked and written as it is read, in one transaction that
    is rolled back if the file shows any problem (or for a ``dry_run``); the
    memory it takes does not grow with the file.
    """
    if file.read(3) != BOM:
        file.seek(0)
    try:
        with database.connect() as connection:
            loader = FileLoader(
                connection,
                progress,
                replace_organisation=replace_organisation,
                base=base if base is not None else os.getcwd(),
            )
            loaded = loader.load(file)
            if loaded.problems or dry_run:
                connection.rollback()
                problems = sorted_problems(loaded.problems)
                return ImportOutcome(problems=problems, counts={} if problems else loaded.counts)
            scratch.drop(connection)
        return ImportOutcome(counts=loaded.counts)
    except JsonSyntaxError as error:
        return ImportOutcome(problems=syntax_problems(file, str(error)))
    except LoneSurrogate as error:
        problem = position.surrogate_problem(file, error, text_start(file))
        return ImportOutcome(problems=[problem] if problem else syntax_problems(file, str(error)))
    except RecursionError:
        return ImportOutcome(problems=[Problem("", NESTED_TOO_DEEPLY)])


def syntax_problems(file: BinaryIO, message: str) -> list[Problem]:
    """What is wrong with a file that is not JSON, with line and column: in the words
    of Python's json module when the file is small enough to read whole (and json
    finds it), else in ijson's (``message``, the import's, if ijson finds nothing)."""
    start = text_start(file)
    if file.seek(0, io.SEEK_END) <= WHOLE_READ_LIMIT:
        file.seek(0)
        _, problems = decode(file.read())
        if problems:
            return problems
    elif (offset := position.utf8_error_at(file, start)) is not None:
        return [Problem("", f"not UTF-8 text: byte {offset - start} cannot be decoded")]
    return [position.syntax_problem(file, start, message)]


def text_start(file: BinaryIO) -> int:
    """Where the file's text begins: past a byte-order mark."""
    file.seek(0)
    return len(BOM) if file.read(len(BOM)) == BOM else 0


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
    "import_stream",
    "import_text",
    "open_file",
    "read_file",
]
