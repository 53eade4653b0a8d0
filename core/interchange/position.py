"""Where in a refused interchange file its problem is: the line and column of a byte.

Called only when a file is refused, so these read the file again, a chunk at a
time: memory stays flat however large the file. Lines and columns count from 1,
columns in characters, as Python's ``json`` module counts them; ``start`` is
where the text begins (past a byte-order mark).
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from typing import IO

import ijson

from core.interchange.reader import Problem, join
from core.interchange.stream import BACKEND, BUFFER, LoneSurrogate, message_of

CHUNK = 2**20
WHITESPACE = b" \t\r\n"  # JSON's
CONTINUATION = bytes(range(0x80, 0xC0))  # the bytes of UTF-8 that do not begin a character
NOT_JSON_VALUE = re.compile(rb"-?(?:NaN|Infinity)")
NUMBER_AT_END = re.compile(rb"-?[0-9][0-9.eE+-]*\Z")
MALFORMED_AT_END = re.compile(rb"-?[0-9][0-9.eE+-]*\Z|-\Z")
LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
LITERALS = (b"true", b"false", b"null")
JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")  # json's
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


def utf8_error_at(file: IO[bytes], start: int = 0) -> int | None:
    """The offset of the first byte that is not UTF-8, if there is one."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    file.seek(start)
    at = start
    while True:
        chunk = file.read(CHUNK)
        pending = len(decoder.getstate()[0])  # the bytes of a character begun in the last chunk
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as error:
            return at - pending + error.start
        if not chunk:
            return None
        at += len(chunk)


class _Feed:
    """The file from ``start`` as ijson reads it: a buffer at a time up to ``fine``,
    then a byte at a time for a buffer's length (or, to ``probe``, a space), then
    nothing; ``last`` is where the last read began."""

    def __init__(self, file: IO[bytes], start: int, fine: int, *, probe: bool = False) -> None:
        file.seek(start)
        self.file = file
        self.next = self.last = start
        self.fine = fine
        self.probe = probe
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        if self.next < self.fine:
            data = self.file.read(min(BUFFER, self.fine - self.next))
        elif not self.probe:
            data = self.file.read(1) if self.next < self.fine + BUFFER else b""
        else:
            data = b" " if self.next == self.fine else b""
        self.last, self.next, self.ended = self.next, self.next + len(data), not data
        return data


def _parse(feed: _Feed) -> str | None:
    """ijson's words for where ``feed``'s bytes stop being JSON; None if they do not."""
    try:
        deque(BACKEND.basic_parse(feed, buf_size=BUFFER, use_float=True), maxlen=0)
    except (ijson.JSONError, UnicodeDecodeError) as error:
        return message_of(error)
    return None


def syntax_error_at(file: IO[bytes], start: int = 0) -> tuple[int, str] | None:
    """Where ijson finds the file is not JSON, and its words; None if it finds it is.

    The place is where the token it fails at begins (as Python's ``json`` says
    it), or the file's end when the file ends too soon. The file is read twice
    up to there: a buffer at a time, to learn which buffer ijson fails in; then
    that buffer a byte at a time, to learn at which byte.
    """
    end = file.seek(0, 2)
    feed = _Feed(file, start, end)
    words = _parse(feed)
    if words is None:
        return None
    if not feed.ended:
        first = feed
        feed = _Feed(file, start, feed.last)
        words = _parse(feed) or words
        if feed.ended and feed.next < end:  # not again in that buffer (never seen)
            return first.last, words
    if feed.ended and "premature EOF" in words:
        return end, words
    return _token_start(file, start, end if feed.ended else feed.last, words), words


def syntax_problem(file: IO[bytes], start: int, words: str) -> Problem:
    """What is not JSON in ``file``, where, in ijson's words (``words``, the import's
    words, at the file's end if ijson finds nothing wrong)."""
    end = file.seek(0, 2)
    found = syntax_error_at(file, start)
    offset, words = found if found is not None else (end, words)
    if offset == end and _blank(file, start):
        return Problem("", "the file is empty")
    file.seek(offset)
    if (token := NOT_JSON_VALUE.match(file.read(16))) is not None:
        words = f"{token.group().decode()} is not a JSON value"
    line, column = line_and_column(file, offset, start)
    return Problem("", f"not JSON: {words.rstrip('.')} at line {line}, column {column}")


def _token_start(file: IO[bytes], start: int, offset: int, words: str) -> int:
    """Where the token begins that ijson failed at when given the byte at ``offset``
    (or the end of the file there).

    yajl says some errors at a token's last byte (a string's closing quote, the
    last letter of ``true``) or just after it (a number ends at the byte after
    it); Python's ``json`` says them where the token begins, as this does.
    """
    low = max(start, offset - LOOK_BACK)
    file.seek(low)
    before = file.read(offset - low)
    at = file.read(1)
    if words.startswith("parse error"):
        # A number ends at the byte after it: was it the number that was refused?
        number = NUMBER_AT_END.search(before)
        if number is not None and (
            not at or at in WHITESPACE or _rejects_number(file, start, offset)
        ):
            return low + _refused_in(number)
        if at == b'"':  # a string's closing quote
            quote = _opening_quote(file, offset, start)
            return offset if quote is None else quote
        if at and at in LETTERS:  # the last letter of true, false or null
            return offset - _misspelt(before + at) + 1
    elif "invalid string" in words:  # a misspelt true, false or null
        return offset - _misspelt(before)
    elif "malformed number" in words and (number := MALFORMED_AT_END.search(before)):
        return low + _refused_in(number)
    elif "before a character which it may not" in words:  # an escape such as \x
        return offset - 1
    elif "after '\\u'" in words:  # an escape such as \u12x4: said at its u, as json says it
        return low + max(before.rfind(b"\\u"), len(before) - 5) + 1
    return offset


def _refused_in(number: re.Match[bytes]) -> int:
    """Where in a run of number characters the token refused begins: where a JSON
    number read from its start ends (``0`` of ``01``, ``587`` of ``587.``), else
    at its start."""
    read = JSON_NUMBER.match(number.group())
    within = read.end() if read is not None and read.end() < len(number.group()) else 0
    return number.start() + within


def _misspelt(before: bytes) -> int:
    """How many letters end ``before`` from where a misspelt literal begins (after
    the literals that come whole: ``n`` of ``truen``)."""
    letters = before[len(before.rstrip(LETTERS)) :]
    while literal := next((w for w in LITERALS if letters.startswith(w) and letters != w), b""):
        letters = letters[len(literal) :]
    return len(letters)


def _rejects_number(file: IO[bytes], start: int, offset: int) -> bool:
    """Whether ijson fails at the number that ends before ``offset`` (``{"a" 1}``), not
    at the byte after it (``[1}``): read again to the number's end, then a space."""
    feed = _Feed(file, start, offset, probe=True)
    return _parse(feed) is not None and not feed.ended


def _blank(file: IO[bytes], start: int) -> bool:
    file.seek(start)
    while chunk := file.read(CHUNK):
        if chunk.strip(WHITESPACE):
            return False
    return True


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
