"""Reading an interchange file a record at a time (ijson, its C backend where built).

``iter_file`` walks the top-level object once and yields what the import
checks, in file order, never the whole document:

- ``TopKey(name)`` for each top-level key, as it comes (duplicates included);
- ``Element(section, index, value)`` for each element of a top-level list;
- ``Whole(section, value)`` for a top-level value that is not a list
  (``format``, ``organisation``, or a section that is not the list it should be);
- ``NotAnObject(type_name)`` when the document is no object at all.

Objects are ``JsonObject``: dicts that remember keys given more than once.
A syntax error raises ``JsonSyntaxError`` (its message is ijson's); a string
holding a lone surrogate escape raises ``LoneSurrogate``, placed at its path.
Events come without prefixes: ijson's ``parse`` spells out each event's whole
path, which a deeply nested file makes quadratic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import ijson

from core.interchange.reader import JsonObject

# The events that open a value, and how the contract names its type.
OPENING_TYPE = {
    "start_map": "an object",
    "start_array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "a number",
    "double": "a number",
    "boolean": "a boolean",
    "null": "null",
}
BUFFER = 64 * 1024
# The backend ijson chose (yajl2_c when its C extension is built, else a slower one).
BACKEND: Any = ijson.get_backend(ijson.backend_name)


class JsonSyntaxError(ValueError):
    """The bytes are not JSON (ijson's words for where and why)."""


# The escape of a UTF-16 surrogate (U+D800 to U+DFFF): half of a character beyond
# U+FFFF, written as a high half (D800-DBFF) and a low one (DC00-DFFF). A high
# half is matched with the low half after it, if there is one (group 1).
SURROGATE_ESCAPE = re.compile(
    rb"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(\\u[dD][c-fC-F][0-9a-fA-F]{2})?|[c-fC-F][0-9a-fA-F]{2})"
)
# Bytes kept back from each read until the next: a pair of escapes that begins in
# what is given is then whole in what is searched (12 bytes from its backslash).
HELD = 11


class LoneSurrogate(Exception):
    """A string holds a lone surrogate escape (``"\\ud800"``): half a character, no text.

    yajl would read a lone high half as ``?``, pair it with whatever escape follows,
    and give a lone low half as bytes that are not UTF-8 (a ``UnicodeDecodeError``).
    ``offset`` is where the escape's backslash is in the file. The walk through
    the file places it: ``path`` holds the keys and indexes of the value (object or
    list) that holds the string, ``slot`` the key or index the string has there
    (in an object, only if the string is a value and not a key: ``in_object``
    says to ask the bytes). ``path`` is None when no place is known.
    """

    def __init__(self, offset: int, escape: str) -> None:
        super().__init__(f"{escape} at byte {offset} is a lone surrogate escape")
        self.offset = offset
        self.escape = escape
        self.path: list[str | int] | None = None
        self.slot: str | int | None = None
        self.in_object = False

    def place(self, path: list[str | int], slot: str | int | None, in_object: bool) -> None:
        self.path, self.slot, self.in_object = path, slot, in_object


class _Checked:
    """``file`` as the parser reads it, stopped at the first lone surrogate escape.

    Each read is searched for surrogate escapes (a regular expression over the
    bytes: a file without any costs next to nothing). The bytes up to a lone one,
    its backslash included, are given; the next read raises ``LoneSurrogate``. By
    then the parser has made every event before the string that holds the escape
    (the string is not done), and a syntax error before it has been raised. A
    backslash that is not inside a string is a syntax error of its own, raised first.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.offset = file.tell()  # where in the file ``held`` begins
        self.held = b""
        self.backslashes = 0  # how many backslashes end the bytes given so far
        self.pair_low = -1  # the offset of the low half of the last pair read
        self.stop: LoneSurrogate | None = None

    def read(self, size: int = -1) -> bytes:
        if self.stop is not None:
            raise self.stop
        if size == 0:
            return b""
        data = self.held
        while True:
            more = self.file.read(size if size > 0 else BUFFER)
            data += more
            if not more or len(data) > HELD:
                break
        end = len(data) - HELD if more else len(data)
        lone = self._lone(data, end)
        if lone is not None:
            self.stop = LoneSurrogate(self.offset + lone, data[lone : lone + 6].decode("ascii"))
            end = lone + 1
        given = data[:end]
        self.held = data[end:]
        self.offset += end
        if given.endswith(b"\\"):
            run = len(given) - len(given.rstrip(b"\\"))
            self.backslashes = run + (self.backslashes if run == len(given) else 0)
        else:
            self.backslashes = 0
        return given

    def _lone(self, data: bytes, end: int) -> int | None:
        """Where the first lone surrogate escape that begins before ``end`` is, if any."""
        for match in SURROGATE_ESCAPE.finditer(data):
            at = match.start()
            if at >= end:
                break
            if at < 6 and self.offset + at == self.pair_low:
                continue  # the low half of a pair whose high half was given before
            escaped = False  # the backslash is escaped: text follows, not an escape
            if at == 0 or data[at - 1] == 0x5C:
                before = at
                while before > 0 and data[before - 1] == 0x5C:
                    before -= 1
                escaped = (at - before + (self.backslashes if before == 0 else 0)) % 2 == 1
            low = match.group(1)
            if escaped:
                if low is not None:
                    return at + 6  # text that looks like a high half, then a low one
                continue
            if low is None:
                return at
            if at + 6 >= end:
                self.pair_low = self.offset + at + 6
        return None


@dataclass(frozen=True, slots=True)
class TopKey:
    name: str


@dataclass(frozen=True, slots=True)
class Element:
    section: str
    index: int
    value: Any


@dataclass(frozen=True, slots=True)
class Whole:
    section: str
    value: Any


@dataclass(frozen=True, slots=True)
class NotAnObject:
    type_name: str


Event = TopKey | Element | Whole | NotAnObject


def iter_file(file: IO[bytes]) -> Iterator[Event]:
    """The top-level keys and the records of ``file``, in file order."""
    events = BACKEND.basic_parse(_Checked(file), buf_size=BUFFER, use_float=True)
    try:
        yield from _walk(events)
    except ijson.JSONError as error:
        raise JsonSyntaxError(message_of(error)) from None
    except UnicodeDecodeError:  # bytes yajl passed that are not UTF-8 (an overlong form)
        raise JsonSyntaxError("not UTF-8 text") from None


DEEPER = "\0"  # the prefix given to events inside a record: the builder ignores it there


def _walk(events: Iterator[tuple[str, Any]]) -> Iterator[Event]:
    """The top-level object, each list in it an element at a time."""
    try:
        first = next(events, None)
        if first is None:
            raise JsonSyntaxError("the file is empty")
        if first[0] != "start_map":
            yield NotAnObject(OPENING_TYPE.get(first[0], first[0]))
            for _ in events:  # read to the end: a syntax error later still counts
                pass
            return
    except LoneSurrogate as error:
        error.place([], None, False)  # in a file that is no object: said without a path
        raise
    key = ""
    in_list = False  # in a top-level list (the section ``key``)
    index = -1
    try:
        for event, value in events:
            if event == "map_key":
                key = value
                yield TopKey(key)
            elif event == "end_map":  # the end of the top-level object
                continue
            elif event == "start_array":  # a top-level list: its elements one by one
                in_list, index = True, -1
                # enumerate counts the first events of elements: _value reads the rest.
                for index, (event, value) in enumerate(events):
                    if event == "end_array":
                        break
                    yield Element(key, index, _value(events, event, value))
                in_list = False
            else:
                yield Whole(key, _value(events, event, value))
    except LoneSurrogate as error:
        if error.path is not None:  # inside a value: the value's own place first
            error.path[:0] = [key, index] if in_list else [key]
        elif in_list:
            error.place([key], index + 1, False)
        else:
            error.place([], key, True)
        raise


def _value(events: Iterator[tuple[str, Any]], event: str, value: Any) -> Any:
    """One whole value, its first event given, built from the events that follow.

    Objects are ``JsonObject``s that name the keys given more than once (the
    last value wins, as with ``json``). Written out rather than with ijson's
    builder: the events of a million records pass through here, and a
    coroutine's ``send`` an event cost twice as much.
    """
    if event != "start_map" and event != "start_array":
        return value
    root: Any = JsonObject() if event == "start_map" else []
    stack: list[Any] = [root]
    keys: list[str] = []
    container = root
    key = ""
    try:
        for event, value in events:
            if event == "map_key":
                key = value
                continue
            if event == "end_map" or event == "end_array":
                stack.pop()
                if not stack:
                    return root
                container = stack[-1]
                key = keys.pop()
                continue
            if event == "start_map" or event == "start_array":
                item: Any = JsonObject() if event == "start_map" else []
            else:
                item = value
            if container.__class__ is list:
                container.append(item)
            else:
                if key in container and key not in container.duplicate_keys:
                    container.duplicate_keys = (*container.duplicate_keys, key)
                container[key] = item
            if event == "start_map" or event == "start_array":
                stack.append(item)
                keys.append(key)
                container = item
    except LoneSurrogate as error:
        # Each open value is the last one of its parent: a list's last element, or
        # the value of the key it was given under.
        path: list[str | int] = [
            len(parent) - 1 if parent.__class__ is list else keys[depth]
            for depth, parent in enumerate(stack[:-1])
        ]
        if container.__class__ is list:
            error.place(path, len(container), False)
        else:
            error.place(path, key, True)
        raise
    raise JsonSyntaxError("parse error: premature EOF")


def message_of(error: Exception) -> str:
    """ijson's words for a syntax error: the first line, without yajl's excerpt."""
    text = str(error.args[0] if error.args else error)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return " ".join(text.split("\n")[0].split())
