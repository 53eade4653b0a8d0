"""Paths that never leave the documents folder, and files opened safely inside it.

A path is always relative to the documents folder. ``path_problem`` refuses
what the text alone tells leaves it (absolute, ``..``); ``open_inside`` opens
a file for reading only when the file it resolves to lies inside the folder,
and opens it component by component (``openat`` with ``O_NOFOLLOW``) along
the resolved path, so that a link swapped in between the check and the open
is refused rather than followed. Links inside the folder that stay inside it
are followed; one that points out is refused, whenever it was made.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FileProblem(Exception):
    """A file that cannot be attached: the path (relative to the folder) and why."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why


class FolderMissing(Exception):
    """The documents folder itself is missing (or not a folder): a fault of the definition."""


def path_problem(path: str) -> str | None:
    """What makes ``path`` no relative path inside a folder, from its text alone, or None."""
    if not path.strip():
        return "must not be empty"
    if "\x00" in path:
        return "holds a NUL character"
    if path.startswith(("/", "\\")) or PurePosixPath(path).is_absolute():
        return "is absolute: a file's path is relative to the documents folder"
    if len(path) >= 2 and path[1] == ":" and path[0].isalpha():
        return "is absolute: a file's path is relative to the documents folder"
    if ".." in PurePosixPath(path).parts:
        return "leaves the documents folder ('..')"
    return None


def _inside(root: str, target: str) -> bool:
    return os.path.commonpath([root, target]) == root


@dataclass(frozen=True, slots=True)
class Resolved:
    """A path's resolved form: the folder's real path and the file's parts below it."""

    root: str
    parts: tuple[str, ...]


def resolve(folder: str, path: str) -> Resolved:
    """Where ``path`` leads inside ``folder``, links followed; FileProblem when it leads
    outside (or its text does), FolderMissing when the folder is not there."""
    if (problem := path_problem(path)) is not None:
        raise FileProblem(path, problem)
    root = os.path.realpath(folder)
    if not os.path.isdir(root):
        raise FolderMissing(f"the documents folder {folder} does not exist or is not a folder")
    target = os.path.realpath(os.path.join(root, path))
    if not _inside(root, target):
        raise FileProblem(path, "leads outside the documents folder (a symbolic link points out)")
    parts = tuple(os.path.relpath(target, root).split(os.sep))
    if parts in ((".",), ()):
        raise FileProblem(path, "is the documents folder itself, not a file")
    return Resolved(root, parts)


def leaves_folder(folder: str, path: str) -> str | None:
    """Import's check: why ``path`` leaves ``folder`` (its text, or a link existing now
    that points out), or None. A path that does not exist yet is not refused."""
    if (problem := path_problem(path)) is not None:
        return problem
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, path))
    if not _inside(root, target):
        return "leads outside the documents folder (a symbolic link points out)"
    return None


@contextmanager
def open_inside(folder: str, path: str) -> Iterator[int]:
    """A file descriptor for reading the regular file ``path`` inside ``folder``.

    FileProblem when it is missing, not a regular file, unreadable, or leads
    outside the folder (now, or by a link swapped in while it is opened).
    """
    resolved = resolve(folder, path)
    try:
        directory = os.open(resolved.root, os.O_RDONLY | DIRECTORY | CLOEXEC)
    except OSError as error:
        raise FolderMissing(
            f"the documents folder {folder} cannot be opened ({error.strerror})"
        ) from None
    fd = -1
    try:
        for part in resolved.parts[:-1]:
            following = os.open(
                part, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC, dir_fd=directory
            )
            os.close(directory)
            directory = following
        fd = os.open(
            resolved.parts[-1], os.O_RDONLY | NOFOLLOW | NONBLOCK | CLOEXEC, dir_fd=directory
        )
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(path, "is not a regular file")
    except FileProblem:
        if fd >= 0:
            os.close(fd)
        os.close(directory)
        raise
    except OSError as error:
        if fd >= 0:
            os.close(fd)
        os.close(directory)
        raise FileProblem(path, _why(error)) from None
    os.close(directory)
    try:
        yield fd
    finally:
        os.close(fd)


def _why(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "no such file"
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        # O_NOFOLLOW met a link along a path that had none when it was resolved.
        return "changed into a symbolic link while it was opened: not read"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)"
    if error.errno == errno.EISDIR:
        return "is not a regular file"
    return f"cannot be read ({error.strerror})"


def read_all(fd: int, size: int) -> bytes:
    """Every byte of an open file (``size`` from its fstat, a hint)."""
    chunks = []
    while True:
        chunk = os.read(fd, max(size, 65536))
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class Checked:
    """A file as it is now: its size and modification time (for rule 20 and caching)."""

    size: int
    mtime_ns: int
    inode: int


def check(folder: str, path: str) -> Checked:
    """The file ``path`` opened as sending will open it: FileProblem or FolderMissing
    when it cannot be; a byte is read, so that an unreadable file says so."""
    with open_inside(folder, path) as fd:
        info = os.fstat(fd)
        try:
            os.read(fd, 1)
        except OSError as error:
            raise FileProblem(path, _why(error)) from None
        return Checked(info.st_size, info.st_mtime_ns, info.st_ino)
