"""When a postponed message is tried again, and when it is given up (domain.md, Retries).

A 4xx reply or a connection fault puts a recipient in ``retrying``. It is
tried again after the profile's ``retry_after_seconds`` in turn (the last
delay repeating), each with ±20 % jitter, until ``retry_for_seconds`` have
passed since its first attempt; then it is ``failed``. The last try is
brought forward to the end of that budget rather than falling after it.

Pure functions: the caller gives the instants and the random draw.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

DEFAULT_RETRY_AFTER_SECONDS: Final[tuple[float, ...]] = (60, 120, 300, 600, 1200, 2400, 3600)
DEFAULT_RETRY_FOR_SECONDS: Final = 86400.0
JITTER: Final = 0.2


def retry_delay(
    failed_attempts: int,
    schedule: Sequence[float] = DEFAULT_RETRY_AFTER_SECONDS,
    draw: Callable[[], float] = random.random,
) -> float:
    """Seconds before the next try after ``failed_attempts`` (1 or more) failed ones.

    ``draw`` gives a number in [0, 1): 0 is 20 % early, 0.5 on time, 1 20 % late.
    """
    if not schedule:
        schedule = DEFAULT_RETRY_AFTER_SECONDS
    base = float(schedule[min(max(failed_attempts, 1), len(schedule)) - 1])
    return base * (1.0 + JITTER * (2.0 * draw() - 1.0))


def next_attempt(
    *,
    first_attempt_at: datetime,
    now: datetime,
    failed_attempts: int,
    schedule: Sequence[float] | None = None,
    retry_for_seconds: float | None = None,
    draw: Callable[[], float] = random.random,
) -> datetime | None:
    """When to try again after a postponement at ``now``; None: give up (``failed``)."""
    budget = DEFAULT_RETRY_FOR_SECONDS if retry_for_seconds is None else retry_for_seconds
    deadline = first_attempt_at + timedelta(seconds=budget)
    if now >= deadline:
        return None
    delay = retry_delay(failed_attempts, schedule or DEFAULT_RETRY_AFTER_SECONDS, draw)
    return min(now + timedelta(seconds=delay), deadline)
