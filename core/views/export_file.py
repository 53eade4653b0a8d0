"""A run's recipients written to a file: the one CSV writer of the CLI and the console.

The rows are ``core.views.export_rows.rows`` (streamed, in plan order); this
turns them into RFC 4180 lines — a cell that a spreadsheet would run as a
formula written with a leading ``'`` (``domain.md``) — and writes a file whole
or not at all (or into a device, a FIFO, a pipe or a socket as it is). A file that exists (or a
link to one) is replaced only when asked (``--force``, the console's
confirmation); else it is created exclusively, so that nothing is replaced
even by a file that appears while the export runs.
"""

from __future__ import annotations

import csv
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from core.storage import Database
from core.views import export_rows


class BadTarget(ValueError):
    """The file cannot be written there: a folder, a missing folder, no permission."""


class ReaderLeft(BadTarget):
    """What the export was written into is a pipe or socket whose reader stopped reading
    (``--out /dev/stdout | head``): not an error of the export, as ``| head`` on
    standard output is not."""


class TargetExists(BadTarget):
    """The file exists, and replacing it was not asked for."""

    def __init__(self, message: str, target: Path) -> None:
        super().__init__(message)
        self.target = target


# What a spreadsheet reads as the start of a formula (or, after a tab or a
# carriage return it drops, of one): such a cell is written with a leading "'".
# The formats an export is written in; a file named for one is never written in the other.
FORMATS = ("csv", "json")


def named_format(path: str) -> str | None:
    """The format a file's name says (``run.json``: json), if it names one."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else None


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as its CSV cell: empty for None, a leading ``'`` before what a
    spreadsheet would run as a formula, anything else as it is."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """RFC 4180 text (CRLF line ends, quotes doubled), a header row first; no cell
    runs as a formula in a spreadsheet (``csv_cell``)."""
    buffer = _Line()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(export_rows.COLUMNS)
    yield buffer.take()
    for row in rows:
        writer.writerow([csv_cell(row[c]) for c in export_rows.COLUMNS])
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


def default_name(run_id: int, chosen: export_rows.Selection) -> str:
    """``run-7.csv``, or ``run-7-failed.csv`` with a filter."""
    slug = chosen.slug
    return f"run-{run_id}-{slug}.csv" if slug else f"run-{run_id}.csv"


def check_target(path: str, what: str = "--out", replace: bool = False) -> Path:
    """The file to write, checked before anything is read: its folder must exist, and
    a file already there (or a link) is refused (``TargetExists``) unless ``replace``."""
    if not path.strip():
        raise BadTarget(f"{what}: give a file name")
    target = Path(path).expanduser()
    if target.is_dir():
        raise BadTarget(f"{what} {path}: is a folder; name a file in it")
    if not replace and is_existing_file(target):
        raise TargetExists(f"{what} {path}: the file exists", target)
    if _written_into(target):
        return target  # a device, a FIFO, a pipe or a socket: no file is made beside it
    folder = _written(target).parent
    if not folder.is_dir():
        raise BadTarget(f"{what} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise BadTarget(f"{what} {path}: the folder {folder} cannot be written")
    return target


def is_existing_file(target: Path) -> bool:
    """Whether writing ``target`` would replace a file: a regular file, or a link to
    one (or to nothing yet). A device, a FIFO (or a link to one) is written into,
    never replaced."""
    return target.is_file() or (target.is_symlink() and not target.exists())


def _written_into(target: Path) -> bool:
    """Whether ``target`` (its links followed by the system, ``/proc``'s own too) is
    something written into as it is: neither a regular file nor nothing at all. An
    anonymous pipe or socket (``/dev/stdout`` → ``/proc/self/fd/1`` → ``pipe:[…]``) is
    one; resolving its links by name would lead to no file at all."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _own_descriptor(target: Path) -> int | None:
    """The descriptor of this process ``target`` names through its links
    (``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/1``), or None. A socket (and
    anything else opened by this process) is written through it: opening
    ``/proc/self/fd/N`` anew works for a pipe but not for a socket."""
    own = os.path.realpath(f"/proc/{os.getpid()}/fd")
    path = os.path.abspath(target)
    for _ in range(40):  # as many links as the system follows
        parent, name = os.path.split(path)
        parent = os.path.realpath(parent)
        if parent == own and name.isdigit():
            return int(name)
        try:
            link = os.readlink(path)
        except OSError:
            return None
        path = os.path.normpath(os.path.join(parent, link))
    return None


def _written(target: Path) -> Path:
    """The path whose file is written: a link's target (the link stays)."""
    if not target.is_symlink():
        return target
    try:
        return target.resolve()
    except (OSError, RuntimeError):  # a loop of links
        raise BadTarget(f"{target}: a link that leads nowhere (a loop of links)") from None


def _umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def write_lines(target: Path, lines: Iterable[str], replace: bool = False) -> int:
    """Write the lines to ``target``; how many were written.

    A regular file is written whole or not at all: a temporary file beside
    it, then put in its place — created exclusively (``TargetExists`` when a
    file is there by then), or with ``replace`` renamed over it, keeping the
    permissions of the file it replaces. A symbolic link is followed (the file
    it points at is written, the link stays). Anything else that is not a
    regular file — a FIFO, a device such as ``/dev/null``, a pipe or a socket
    (``/dev/stdout`` under ``| wc``) — is written into as it is.
    """
    named = target
    if _written_into(named):
        return _write_into(named, lines)
    target = _written(target)
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
        if replace:
            os.replace(temporary, target)
        else:
            _create(Path(temporary), target, named)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise BadTarget(f"cannot write {target}: {error.strerror or error}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return written


def _create(temporary: Path, target: Path, named: Path) -> None:
    """The written temporary file put at ``target``, which must not exist: a hard
    link, which fails when anything is there; where the file system has none, the
    name taken exclusively first and then replaced."""
    try:
        try:
            os.link(temporary, target)
        except FileExistsError:
            raise TargetExists(
                f"{named}: the file exists (made while the export ran)", named
            ) from None
        except OSError:  # no hard links here (some network and FAT file systems)
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                raise TargetExists(
                    f"{named}: the file exists (made while the export ran)", named
                ) from None
            try:
                os.replace(temporary, target)
            except OSError:
                target.unlink(missing_ok=True)  # the empty file this made, no other
                raise
    finally:
        temporary.unlink(missing_ok=True)


def _write_into(target: Path, lines: Iterable[str]) -> int:
    """Write into what is there as it is: through this process's own descriptor when
    the path names one (a pipe or socket that is standard output), else opened by
    its name (links followed by the system)."""
    written = 0
    try:
        with _opened_into(target) as out:
            for line in lines:
                out.write(line)
                written += 1
    except BrokenPipeError:
        raise ReaderLeft(f"{target}: its reader stopped reading") from None
    except OSError as error:
        raise BadTarget(f"cannot write {target}: {error.strerror or error}") from None
    return written


def _opened_into(target: Path) -> TextIO:
    descriptor = _own_descriptor(target)
    if descriptor is not None:
        return os.fdopen(os.dup(descriptor), "w", encoding="utf-8", newline="")
    return open(target, "w", encoding="utf-8", newline="")


def export_csv(
    database: Database,
    run_id: int,
    chosen: export_rows.Selection,
    target: Path,
    wrap: Callable[[Iterable[dict[str, Any]]], Iterable[dict[str, Any]]] | None = None,
    replace: bool = False,
) -> int:
    """The chosen recipients of the run as a CSV file; how many recipients it holds."""
    rows: Iterable[dict[str, Any]] = export_rows.rows(database, run_id, chosen)
    if wrap is not None:
        rows = wrap(rows)
    return write_lines(target, csv_lines(rows), replace) - 1  # less the header
