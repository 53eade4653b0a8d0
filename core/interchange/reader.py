"""Reading one JSON object of the interchange file strictly, collecting every problem.

A ``Reader`` wraps one object at one JSON path. Each accessor reads one key,
checks it (presence, type, enum, format) and returns the value, or ``None``
after recording a problem; nothing raises, so one pass lists every error.
Keys nobody read are reported as unknown by ``finish()``.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from croniter import croniter

MISSING = object()
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MAX_ID_LENGTH = 200


# Joiners shape words in some scripts (Persian, Indic) and emoji: not refused.
JOINERS = {"\u200c", "\u200d"}
# Line and paragraph separators break a line like a newline does.
SEPARATORS = {"Cc", "Cf", "Zl", "Zp"}
MULTILINE_ALLOWED = frozenset({"\n", "\r", "\t"})
# A customer attribute's value may hold a tab and a line feed (an address block, a
# note), never a carriage return or another control or format character.
ATTRIBUTE_ALLOWED = frozenset({"\n", "\t"})


def control_character(
    value: str, *, multiline: bool = False, allowed: frozenset[str] = frozenset()
) -> str | None:
    """The first control character in ``value`` as ``U+XXXX``, or None.

    Newlines, tabs, bidirectional overrides (U+202E) and other format or
    control characters break the console's lines and can make one name look
    like another, so displayed text may not hold them. ``multiline`` text
    (a template's body) may hold newlines and tabs; ``allowed`` names other
    characters a value may hold.
    """
    if value.isprintable():
        # Python's printable excludes every "Other" and "Separator" character but the
        # space: no control, format, line or paragraph separator is there (a million
        # customers' names and addresses are read here; the loop below costs 40 times more).
        return None
    if multiline:
        allowed = allowed | MULTILINE_ALLOWED
    for char in value:
        if char in JOINERS or char in allowed:
            continue
        if unicodedata.category(char) in SEPARATORS:
            return f"U+{ord(char):04X}"
    return None


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input, at a JSON path (``customers[3].contacts[0].id``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class JsonObject(dict[str, Any]):
    """A JSON object that remembers keys given more than once (json keeps the last)."""

    duplicate_keys: tuple[str, ...] = ()


def object_pairs(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicates = []
        for key, _ in pairs:
            if key in seen and key not in duplicates:
                duplicates.append(key)
            seen.add(key)
        obj.duplicate_keys = tuple(duplicates)
    return obj


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


@cache
def known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class Reader:
    """Strict accessors over one JSON object at ``path``."""

    def __init__(self, problems: list[Problem], path: str, value: Any) -> None:
        self.problems = problems
        self.path = path
        self.ok = isinstance(value, dict)
        self.obj: dict[str, Any] = value if isinstance(value, dict) else {}
        self.read: set[str] = set()
        if not self.ok:
            self.problem("", f"expected an object, got {type_name(value)}")
        for key in getattr(value, "duplicate_keys", ()):
            self.problem(key, "given more than once")

    # -- bookkeeping --------------------------------------------------------

    def at(self, key: str | int) -> str:
        return join(self.path, key)

    def problem(self, key: str | int, message: str) -> None:
        path = self.at(key) if key != "" else self.path
        self.problems.append(Problem(path, message))

    def finish(self) -> None:
        """Report every key that no accessor asked for."""
        for key in self.obj:
            if key not in self.read:
                self.problem(key, "unknown key")

    def raw(self, key: str, *, required: bool) -> Any:
        """The value under ``key``; ``MISSING`` when absent (null counts as absent)."""
        self.read.add(key)
        value = self.obj.get(key)
        if value is None:
            if required and self.ok:
                self.problem(key, "required")
            return MISSING
        return value

    def sub(self, key: str, *, required: bool) -> Reader | None:
        value = self.raw(key, required=required)
        if value is MISSING:
            return None
        return Reader(self.problems, self.at(key), value)

    def items(self, key: str, *, required: bool = False) -> list[tuple[str, Any]]:
        """The elements of a list under ``key`` with their paths ([] when absent)."""
        value = self.raw(key, required=required)
        if value is MISSING:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected a list, got {type_name(value)}")
            return []
        return [(join(self.at(key), index), element) for index, element in enumerate(value)]

    # -- scalars ------------------------------------------------------------

    def _typed(
        self, key: str, required: bool, check: Callable[[Any], bool], want: str, default: Any = None
    ) -> Any:
        value = self.raw(key, required=required)
        if value is MISSING:
            return default
        if not check(value):
            self.problem(key, f"expected {want}, got {type_name(value)}")
            return None
        return value

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        max_length: int = 10_000,
        multiline: bool = False,
    ) -> str | None:
        value: str | None = self._typed(key, required, lambda v: isinstance(v, str), "a string")
        if value is None:
            return None
        if (char := control_character(value, multiline=multiline)) is not None:
            self.problem(key, f"control character {char} not allowed")
            return None
        if required and not value.strip():
            self.problem(key, "must not be empty")
            return None
        if len(value) > max_length:
            self.problem(key, f"longer than {max_length} characters")
            return None
        return value

    def ident(self, key: str, *, required: bool = True) -> str | None:
        """An id, or a reference to one: a non-empty string of at most 200 characters."""
        value = self.text(key, required=required, max_length=MAX_ID_LENGTH)
        if value is not None and value != value.strip():
            self.problem(key, f"{value!r} has spaces at its ends")
            return None
        return value

    def boolean(
        self, key: str, *, required: bool = False, default: bool | None = None
    ) -> bool | None:
        value: bool | None = self._typed(
            key, required, lambda v: isinstance(v, bool), "true or false", default
        )
        return value

    def integer(
        self,
        key: str,
        *,
        required: bool = False,
        low: int | None = None,
        high: int | None = None,
        default: int | None = None,
    ) -> int | None:
        value = self.raw(key, required=required)
        if value is MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(key, f"expected a whole number, got {type_name(value)}")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            self.problem(key, f"must be {bounds}, got {value}")
            return None
        return value

    def number(
        self,
        key: str,
        *,
        required: bool = False,
        positive: bool = False,
        default: float | None = None,
    ) -> float | None:
        value = self.raw(key, required=required)
        if value is MISSING:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.problem(key, f"expected a number, got {type_name(value)}")
            return None
        if positive and value <= 0:
            self.problem(key, f"must be greater than 0, got {value}")
            return None
        return float(value)

    def choice(self, key: str, allowed: Sequence[str], *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        if value not in allowed:
            self.problem(key, f"{value!r} is not one of: {', '.join(allowed)}")
            return None
        return value

    def _string_list(self, key: str, check: Callable[[str], str | None]) -> list[str] | None:
        """An optional list of strings; ``check`` names what is wrong with one, or None."""
        value = self.raw(key, required=False)
        if value is MISSING:
            return None
        if not isinstance(value, list):
            self.problem(key, f"expected a list, got {type_name(value)}")
            return None
        good = True
        for index, element in enumerate(value):
            wrong = (
                f"expected a non-empty string, got {type_name(element)}"
                if not isinstance(element, str) or not element
                else (
                    f"control character {char} not allowed"
                    if (char := control_character(element)) is not None
                    else check(element)
                )
            )
            if wrong is not None:
                self.problem(f"{key}[{index}]", wrong)
                good = False
        return list(value) if good else None

    def choices(self, key: str, allowed: Sequence[str]) -> list[str] | None:
        """An optional list of values from ``allowed``."""
        return self._string_list(
            key, lambda v: None if v in allowed else f"{v!r} is not one of: {', '.join(allowed)}"
        )

    def strings(self, key: str) -> list[str] | None:
        """An optional list of non-empty strings."""
        return self._string_list(key, lambda _: None)

    def day(self, key: str, *, required: bool = False) -> date | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        if DATE_RE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.problem(key, f"{value!r} is not a date (YYYY-MM-DD)")
        return None

    def instant(self, key: str, *, required: bool = False) -> datetime | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None or "T" not in value.upper():
            self.problem(key, f"{value!r} is not an ISO 8601 timestamp (2026-11-23T09:00:00+00:00)")
            return None
        if parsed.tzinfo is None:
            self.problem(key, f"{value!r} has no UTC offset (add +00:00, or the local offset)")
            return None
        return parsed

    def timezone(self, key: str, *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        if value not in known_timezones():
            self.problem(key, f"{value!r} is not an IANA timezone (e.g. Europe/Amsterdam)")
            return None
        return value

    def time_of_day(self, key: str, *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        if not TIME_RE.match(value):
            self.problem(key, f"{value!r} is not a time of day (HH:MM, 00:00 to 23:59)")
            return None
        return value

    def cron(self, key: str, *, required: bool = False) -> str | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        if len(value.split()) != 5 or not croniter.is_valid(value):
            self.problem(
                key,
                f"{value!r} is not a cron expression (five fields: "
                "minute hour day-of-month month day-of-week)",
            )
            return None
        return value

    def flags(self, key: str, allowed: Sequence[str]) -> dict[str, bool]:
        """An optional object of booleans whose keys come from ``allowed``."""
        sub = self.sub(key, required=False)
        if sub is None:
            return {}
        result: dict[str, bool] = {}
        for name in allowed:
            value = sub.boolean(name)
            if value is not None:
                result[name] = value
        sub.finish()
        return result
