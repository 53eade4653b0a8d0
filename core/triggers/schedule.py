"""A routine's fire times: its cron expression read in the organisation's timezone.

The expression is read on the local wall clock (croniter over naive local
times), and each wall-clock time becomes one instant:

- a time that does not exist (the hour clocks skip in spring) fires at the
  first instant after the gap, and fire times that fall in the same gap fire
  once there;
- a time that occurs twice (the hour clocks repeat in autumn) fires at its
  first occurrence only.

So a 02:30 routine runs once on a spring-forward night and once on a
fall-back night.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from core.quiet_hours import local_instant

# At most this many fire times are looked at between two instants: a worker
# down for months behind a routine that fires every minute does not loop for ever.
MOST_FIRES = 10_000


def _local_naive(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _instants(cron: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants after ``after``, in order, each once."""
    # Start a minute early on the wall clock: a fire in a gap just before
    # ``after`` maps to an instant at or after it, and the filter below decides.
    cursor = croniter(cron, _local_naive(after, tz) - timedelta(minutes=1))
    last: datetime | None = None
    while True:
        wall: datetime = cursor.get_next(datetime)
        instant = local_instant(wall.date(), wall.time(), tz)
        if instant <= after or instant == last:
            continue
        last = instant
        yield instant


def fire_times(cron: str, timezone: str, after: datetime, until: datetime) -> list[datetime]:
    """Every fire instant in (after, until], oldest first (at most the last MOST_FIRES)."""
    found: list[datetime] = []
    for instant in _instants(cron, ZoneInfo(timezone), after.astimezone(UTC)):
        if instant > until:
            break
        found.append(instant)
        if len(found) > MOST_FIRES:
            del found[0]
    return found


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first fire instant after ``after``."""
    return next(_instants(cron, ZoneInfo(timezone), after.astimezone(UTC)))
