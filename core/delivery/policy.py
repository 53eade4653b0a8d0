"""Pure policy of delivery: no database, no network, no clock of its own.

- ``reply_outcome``: what a server's reply (or a connection fault) makes of a
  recipient — `sent`, `retrying` until when, or `failed` and why;
- ``settled_state``: the state a run ends in when nothing is left to do now;
- ``fair_share``: how many of a profile's connections one delivery may hold;
- ``mark_group``, ``most_in_doubt``: how many recipients are marked `sending` at
  once, and how many one delivering process may hold in doubt (domain.md, Crash);
- ``sender_processes``: how many child processes send for one delivery;
- ``final_reply_seconds``: how long the reply to the end of a message's data is
  waited for.

The retry schedule itself (backoff with jitter) is ``retry_policy.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.delivery.retry_policy import next_attempt
from core.states import (
    COMPLETED,
    COMPLETED_WITH_FAILURES,
    FAILED,
    HELD,
    PENDING,
    RETRYING,
    SENDING,
    SENT,
    UNKNOWN,
    WAITING,
    RecipientState,
    RunState,
)


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """What one attempt made of a recipient."""

    state: RecipientState  # sent, retrying or failed
    next_attempt_at: datetime | None = None
    error: str | None = None
    hard_bounce: bool = False  # a 5xx saying the mailbox does not exist (5.1.1)


def is_hard_bounce(code: int, text: str) -> bool:
    """The mailbox does not exist (5.1.1)."""
    return code >= 500 and ("5.1.1" in text or (code == 550 and "does not exist" in text.lower()))


def reply_outcome(
    *,
    code: int | None,
    text: str = "",
    fault: str | None = None,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    schedule: Sequence[float] | None = None,
    retry_for_seconds: float | None = None,
    draw: Callable[[], float] = random.random,
) -> ReplyOutcome:
    """The recipient's state after its ``attempts``-th attempt got reply ``code`` (None
    with ``fault``: the connection failed before a reply).

    2xx: `sent`. 4xx or a connection fault: `retrying` at the schedule's next
    time, or `failed` once ``retry_for_seconds`` have passed since the first
    attempt. 5xx: `failed` (a hard bounce when the mailbox does not exist).
    """
    if code is not None and fault is None and 200 <= code < 300:
        return ReplyOutcome(SENT)
    if fault is not None or (code is not None and 400 <= code < 500):
        later = next_attempt(
            first_attempt_at=first_attempt_at,
            now=now,
            failed_attempts=attempts,
            schedule=schedule,
            retry_for_seconds=retry_for_seconds,
            draw=draw,
        )
        if later is not None:
            return ReplyOutcome(RETRYING, next_attempt_at=later, error=fault)
        spent = (now - first_attempt_at).total_seconds()
        return ReplyOutcome(
            FAILED,
            error=f"gave up after {attempts} attempts in {spent:.0f} s"
            + (f": {fault}" if fault else ""),
        )
    return ReplyOutcome(FAILED, hard_bounce=code is not None and is_hard_bounce(code, text))


# RFC 5321 §4.5.3.2.6: the reply to the final "." of the data is waited for at least
# 10 minutes (content filters are slow; giving up early sends the message twice).
FINAL_REPLY_SECONDS = 600.0


def final_reply_seconds(timeout_seconds: float) -> float:
    """How long the reply to the end of a message's data is waited for: at least
    ``FINAL_REPLY_SECONDS``, or the profile's ``timeout_seconds`` when larger."""
    return max(FINAL_REPLY_SECONDS, timeout_seconds)


def settled_state(counts: Mapping[str, int]) -> RunState | None:
    """The state a run ends in when nothing is left to do now, or None if work remains.

    Work remains while anything is pending or sending; held or retrying
    recipients alone make the run `waiting` (the caller has seen that none
    is due now); then failed or unknown ones make it `completed_with_failures`.
    """
    if counts[PENDING] or counts[SENDING]:
        return None
    if counts[HELD] or counts[RETRYING]:
        return WAITING
    if counts[FAILED] or counts[UNKNOWN]:
        return COMPLETED_WITH_FAILURES
    return COMPLETED


def fair_share(max_connections: int, deliveries: int) -> int:
    """Connections one delivery may hold when ``deliveries`` (worker, run) pairs share a
    profile of ``max_connections``: rounded up, and never less than one."""
    return max(1, -(-max_connections // max(1, deliveries)))


# A group marked `sending` ahead of the connections is about this long at the
# current rate (domain.md: "at most about a tenth of a second of the current rate").
MARK_AHEAD_SECONDS = 0.1
# And never larger than this, whatever the rate (one transaction's worth of rows).
MOST_MARKED_AT_ONCE = 2000


def mark_group(rate_per_second: float, max_connections: int) -> int:
    """How many recipients to mark `sending` ahead of the connections: a tenth of a
    second at the current rate, and never fewer than ``max_connections`` (one each)."""
    ahead = int(rate_per_second * MARK_AHEAD_SECONDS + 0.999)
    return max(max_connections, min(MOST_MARKED_AT_ONCE, ahead))


def most_in_doubt(rate_per_second: float, max_connections: int) -> int:
    """What one delivering process may hold marked `sending` and not yet answered.

    ``max_connections`` on the wire, as many again waiting for a connection, and
    the group marked ahead (``mark_group``). After a crash, the `unknown`
    recipients are at most these plus the replies of the last second not yet
    recorded.
    """
    return 2 * max_connections + mark_group(rate_per_second, max_connections)


def to_mark(in_doubt: int, rate_per_second: float, max_connections: int) -> int:
    """How many to mark `sending` now, with ``in_doubt`` marked and not yet answered: 0
    (wait) until there is room for a group's worth (half a group, at least one per
    connection) under ``most_in_doubt``, then all the room there is."""
    room = most_in_doubt(rate_per_second, max_connections) - in_doubt
    least = max(max_connections, mark_group(rate_per_second, max_connections) // 2)
    return room if room >= least else 0


# Sender processes pay off from this many recipients to send (each costs about a
# fifth of a second to start) and when the profile's rate is not what limits.
PROCESSES_FROM = 2000
PROCESSES_ABOVE_RATE = 500.0
MOST_PROCESSES = 16


def sender_processes(
    setting: int | None,
    *,
    cores: int,
    max_connections: int,
    rate_per_second: float | None,
    left_to_send: int,
    deliveries_here: int = 1,
) -> int:
    """How many sender processes deliver one run beside the delivering process (0: its
    connections are its own).

    ``setting`` (MSGRUN_SENDER_PROCESSES) decides when given, never more than the
    connections; else one per core from ``PROCESSES_FROM`` recipients left to send, when
    the machine has cores to spare and the profile's rate leaves something to win.
    The cores are this delivery's share of the machine: ``deliveries_here`` processes
    deliver on it now (workers, ``run start``s), this one included — four workers on
    two cores each starting two sender processes only made the machine's twelve
    processes wait for each other.
    """
    if setting is not None:
        return max(0, min(setting, max_connections, MOST_PROCESSES))
    cores = cores // max(1, deliveries_here)
    if cores < 2 or max_connections < 2 or left_to_send < PROCESSES_FROM:
        return 0
    if rate_per_second is not None and rate_per_second < PROCESSES_ABOVE_RATE:
        return 0
    return min(cores, max_connections, MOST_PROCESSES)
