"""Quiet hours: local wall-clock windows, and the instant they end.

A window ``[start, end)`` is in the recipient's local time; start after end
wraps midnight (21:00–09:00); start equal to end is empty. ``send_after`` is
the next local ``end``. On a day when clocks change, an ``end`` inside the
spring-forward gap means the first instant after the gap, and one that occurs
twice (clocks going back) means its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def parse(cls, start: str, end: str) -> QuietHours:
        return cls(time.fromisoformat(start), time.fromisoformat(end))

    def contains(self, local: time) -> bool:
        """Is a local time of day inside the window (start inside, end outside)?"""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def send_after(self, at: datetime, zone: ZoneInfo) -> datetime | None:
        """When a candidate planned at ``at`` may go: None when ``at`` is outside."""
        local = at.astimezone(zone)
        wall = local.time().replace(tzinfo=None)
        if not self.contains(wall):
            return None
        day = local.date() if wall < self.end else local.date() + timedelta(days=1)
        end = local_instant(day, self.end, zone)
        if end <= at:
            # `at` is in the second pass of an hour that occurs twice, after the
            # first `end`: the next end is its second occurrence, else tomorrow's.
            second = datetime.combine(day, self.end).replace(tzinfo=zone, fold=1).astimezone(UTC)
            end = second if second > at else local_instant(day + timedelta(days=1), self.end, zone)
        return end


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_instant(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time, resolving DST gaps and overlaps.

    fold=0 gives the first occurrence of a repeated time. A time in a gap does
    not round-trip; the instant is then the transition itself, found by
    bisection between the two readings of the wall time.
    """
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=tz, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == naive:
        return instant
    # In a gap: with fold=0 the wall time is read with the offset before the
    # transition (an instant after it), with fold=1 with the offset after it
    # (an instant before it). The transition lies between the two.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = instant
    before = low.astimezone(tz).utcoffset()
    low_s, high_s = int(low.timestamp()), int(high.timestamp())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        offset = datetime.fromtimestamp(middle, UTC).astimezone(tz).utcoffset()
        if offset == before:
            low_s = middle
        else:
            high_s = middle
    return datetime.fromtimestamp(high_s, UTC)
