"""One notion of "now", passed in, and the one timestamp form of every output.

Every timestamp msgrun prints is UTC, ``YYYY-MM-DDTHH:MM:SS+00:00``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that says what it is told; tests, snapshots and ``--at`` use it."""

    def __init__(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("a FixedClock needs a timezone-aware instant")
        self._instant = instant

    def now(self) -> datetime:
        return self._instant

    def set(self, instant: datetime) -> None:
        self._instant = instant


# Instants a plan can reason about (quiet hours look a day or two ahead).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class BadInstant(ValueError):
    """A timestamp a person typed that is not ISO 8601 with an offset."""


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries an offset (``Z`` counts)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInstant(
            f"{text!r} is not an ISO 8601 timestamp (e.g. 2026-11-23T10:00:00+00:00)"
        ) from None
    if value.tzinfo is None:
        typed = text.strip()
        # A date alone is read as its midnight: say the whole instant to type.
        example = f"{typed}T00:00:00" if "T" not in typed and " " not in typed else typed
        raise BadInstant(f"{text!r} has no UTC offset; add one, e.g. {example}+00:00 or {example}Z")
    try:
        in_range = EARLIEST <= value.astimezone(UTC) <= LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise BadInstant(
            f"{text!r} is out of range: an instant between {EARLIEST.year} and {LATEST.year}"
        )
    return value


def format_instant(value: datetime) -> str:
    """The UTC form every output uses: ``2026-11-23T10:00:00+00:00``."""
    if value.tzinfo is None:
        raise ValueError("format_instant needs a timezone-aware datetime")
    return value.astimezone(UTC).replace(microsecond=0).isoformat()
