"""Reading an interchange file a record at a time (ijson, its C backend where built).

``iter_file`` walks the top-level object once and yields what the import
checks, in file order, never the whole document:

- ``TopKey(name)`` for each top-level key, as it comes (duplicates included);
- ``Element(section, index, value)`` for each element of a top-level list;
- ``Whole(section, value)`` for a top-level value that is not a list
  (``format``, ``organisation``, or a section that is not the list it should be);
- ``NotAnObject(type_name)`` when the document is no object at all.

Objects are ``JsonObject``: dicts that remember keys given more than once.
A syntax error raises ``JsonSyntaxError`` (its message is ijson's). Events come
without prefixes: ijson's ``parse`` spells out each event's whole path, which
a deeply nested file makes quadratic.
"""

from __future__ import annotations

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
    events = BACKEND.basic_parse(file, buf_size=BUFFER, use_float=True)
    try:
        yield from _walk(events)
    except ijson.JSONError as error:
        raise JsonSyntaxError(_message(error)) from None


DEEPER = "\0"  # the prefix given to events inside a record: the builder ignores it there


def _walk(events: Iterator[tuple[str, Any]]) -> Iterator[Event]:
    """The top-level object, each list in it an element at a time."""
    first = next(events, None)
    if first is None:
        raise JsonSyntaxError("the file is empty")
    if first[0] != "start_map":
        yield NotAnObject(OPENING_TYPE.get(first[0], first[0]))
        for _ in events:  # read to the end: a syntax error later still counts
            pass
        return
    key = ""
    for event, value in events:
        if event == "map_key":
            key = value
            yield TopKey(key)
        elif event == "end_map":  # the end of the top-level object
            continue
        elif event == "start_array":  # a top-level list: its elements one by one
            # enumerate counts the first events of elements: _value reads the rest.
            for index, (event, value) in enumerate(events):
                if event == "end_array":
                    break
                yield Element(key, index, _value(events, event, value))
        else:
            yield Whole(key, _value(events, event, value))


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
    raise JsonSyntaxError("parse error: premature EOF")


def _message(error: Exception) -> str:
    text = str(error.args[0] if error.args else error)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return " ".join(text.split("\n")[0].split())
