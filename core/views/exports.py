"""A run's recipients written to a file: the one CSV writer of the CLI and the console.

The rows are ``core.delivery.export.rows`` (streamed, in plan order); this
turns them into RFC 4180 lines and writes a file whole or not at all (or into a
device or a FIFO as it is).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from core.delivery import export
from core.storage import Database


class BadTarget(ValueError):
    """The file cannot be written there: a folder, a missing folder, no permission."""


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """RFC 4180 text (CRLF line ends, quotes doubled), a header row first."""
    buffer = _Line()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(export.COLUMNS)
    yield buffer.take()
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in export.COLUMNS])
        yield buffer.take()


class _Line:
    """A file-like sink that csv.writer writes into, emptied after each row."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        return text


def default_name(run_id: int, chosen: export.Selection) -> str:
    """``run-7.csv``, or ``run-7-failed.csv`` with a filter."""
    slug = chosen.slug
    return f"run-{run_id}-{slug}.csv" if slug else f"run-{run_id}.csv"


def check_target(path: str, what: str = "--out") -> Path:
    """The file to write, checked before anything is read: its folder must exist."""
    if not path.strip():
        raise BadTarget(f"{what}: give a file name")
    target = Path(path).expanduser()
    if target.is_dir():
        raise BadTarget(f"{what} {path}: is a folder; name a file in it")
    if not target.parent.is_dir():
        raise BadTarget(f"{what} {path}: the folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise BadTarget(f"{what} {path}: the folder {target.parent} cannot be written")
    return target


def _umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_lines(target: Path, lines: Iterable[str]) -> int:
    """Write the lines to ``target``; how many were written.

    A regular file (new, or replaced) is written whole or not at all: a
    temporary file beside it, renamed over it, keeping the permissions of the
    file it replaces. A symbolic link is followed (the file it points at is
    written, the link stays). Anything else that is not a regular file — a
    FIFO, a device such as ``/dev/null`` — is written into as it is.
    """
    target = target.resolve() if target.is_symlink() else target
    if target.exists() and not target.is_file():
        return _write_into(target, lines)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as error:
        raise BadTarget(f"cannot write in {target.parent}: {error.strerror}") from None
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:  # a new file: readable as any new file here is (mkstemp makes it private)
        mode = 0o666 & ~_umask()
    os.chmod(temporary, mode)
    written = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            for line in lines:
                out.write(line)
                written += 1
        os.replace(temporary, target)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise BadTarget(f"cannot write {target}: {error.strerror or error}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return written


def _write_into(target: Path, lines: Iterable[str]) -> int:
    written = 0
    try:
        with open(target, "w", encoding="utf-8", newline="") as out:
            for line in lines:
                out.write(line)
                written += 1
    except OSError as error:
        raise BadTarget(f"cannot write {target}: {error.strerror or error}") from None
    return written


def export_csv(
    database: Database,
    run_id: int,
    chosen: export.Selection,
    target: Path,
    wrap: Callable[[Iterable[dict[str, Any]]], Iterable[dict[str, Any]]] | None = None,
) -> int:
    """The chosen recipients of the run as a CSV file; how many recipients it holds."""
    rows: Iterable[dict[str, Any]] = export.rows(database, run_id, chosen)
    if wrap is not None:
        rows = wrap(rows)
    return write_lines(target, csv_lines(rows)) - 1  # less the header
