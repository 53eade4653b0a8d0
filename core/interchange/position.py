"""Where in a refused interchange file its problem is: the line and column of a byte.

Called only when a file is refused, so these read the file again, a chunk at a
time: memory stays flat however large the file. Lines and columns count from 1,
columns in characters, as Python's ``json`` module counts them; ``start`` is
where the text begins (past a byte-order mark).
"""

from __future__ import annotations

from typing import IO

from core.interchange.reader import Problem, join
from core.interchange.stream import LoneSurrogate

CHUNK = 2**20
WHITESPACE = b" \t\r\n"  # JSON's
CONTINUATION = bytes(range(0x80, 0xC0))  # the bytes of UTF-8 that do not begin a character
LOOK_BACK = 4096  # bytes read at a time when reading backwards


def line_and_column(file: IO[bytes], offset: int, start: int = 0) -> tuple[int, int]:
    """The line and column of the byte at ``offset``."""
    file.seek(start)
    line, column, at = 1, 1, start
    while at < offset:
        chunk = file.read(min(CHUNK, offset - at))
        if not chunk:
            break
        at += len(chunk)
        newlines = chunk.count(b"\n")
        if newlines:
            line += newlines
            chunk = chunk[chunk.rfind(b"\n") + 1 :]
            column = 1
        column += len(chunk.translate(None, CONTINUATION))
    return line, column


def surrogate_problem(file: IO[bytes], error: LoneSurrogate, start: int = 0) -> Problem | None:
    """The lone surrogate escape ``error`` found, at its path, line and column; None
    if the string that holds it is where no string may be (a syntax error before it)."""
    path = "" if error.path is None else _joined(error.path)
    if error.path is not None and error.slot is not None:
        before = _before_string(file, error.offset, start)
        if len(before) != 1 or before not in (b":{," if error.in_object else b"[,"):
            return None
        in_key = error.in_object and before != b":"
        if not in_key:
            path = join(path, error.slot)
    else:
        in_key = False
    line, column = line_and_column(file, error.offset, start)
    where = f"at line {line}, column {column}"
    what = f"{error.escape} {where} is a lone surrogate escape, not a character"
    return Problem(path, f"in a key, {what}" if in_key else what)


def _joined(segments: list[str | int]) -> str:
    path = ""
    for segment in segments:
        path = join(path, segment)
    return path


def _before_string(file: IO[bytes], offset: int, start: int) -> bytes:
    """The last byte but whitespace before the string that holds ``offset``: ``:``
    before a value in an object, ``{`` or ``,`` before a key."""
    quote = _opening_quote(file, offset, start)
    end = quote if quote is not None else start
    while end > start:
        low = max(start, end - LOOK_BACK)
        file.seek(low)
        stripped = file.read(end - low).rstrip(WHITESPACE)
        if stripped:
            return stripped[-1:]
        end = low
    return b""


def _opening_quote(file: IO[bytes], offset: int, start: int) -> int | None:
    """The offset of the quote that opens the string holding ``offset``: the first
    quote before it that no backslash escapes."""
    size = LOOK_BACK
    while True:
        low = max(start, offset - size)
        file.seek(low)
        data = file.read(offset - low)
        at = len(data)
        while (at := data.rfind(b'"', 0, at)) >= 0:
            before = at
            while before > 0 and data[before - 1] == 0x5C:  # a backslash
                before -= 1
            if before == 0 and low > start:
                break  # the backslashes may begin before what was read: read more
            if (at - before) % 2 == 0:
                return low + at
        if low == start and at < 0:
            return None
        size *= 4
