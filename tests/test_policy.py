"""The pure policy of delivery, tested without a database or a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.delivery.pipeline import RateMeter
from core.delivery.policy import (
    MOST_MARKED_AT_ONCE,
    fair_share,
    mark_group,
    most_in_doubt,
    reply_outcome,
    settled_state,
)
from core.states import RECIPIENT_STATES

FIRST = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def counts(**some: int) -> dict[str, int]:
    return {**dict.fromkeys(RECIPIENT_STATES, 0), **some}


def on_time() -> float:
    return 0.5  # no jitter


def test_a_2xx_reply_means_sent() -> None:
    outcome = reply_outcome(
        code=250, text="2.0.0 ok", attempts=1, first_attempt_at=FIRST, now=FIRST
    )
    assert (outcome.state, outcome.next_attempt_at, outcome.error) == ("sent", None, None)


@pytest.mark.parametrize(("code", "fault"), [(451, None), (None, "connection reset")])
def test_a_4xx_or_a_connection_fault_is_retried_on_the_schedule(
    code: int | None, fault: str | None
) -> None:
    now = FIRST + timedelta(seconds=5)
    outcome = reply_outcome(
        code=code,
        fault=fault,
        attempts=2,
        first_attempt_at=FIRST,
        now=now,
        schedule=[10, 20, 30],
        draw=on_time,
    )
    assert outcome.state == "retrying"
    assert outcome.next_attempt_at == now + timedelta(seconds=20)
    assert outcome.error == fault


def test_a_postponement_after_the_retry_budget_is_a_failure_that_says_so() -> None:
    now = FIRST + timedelta(seconds=100)
    outcome = reply_outcome(
        code=None,
        fault="timed out",
        attempts=4,
        first_attempt_at=FIRST,
        now=now,
        retry_for_seconds=100,
    )
    assert outcome.state == "failed"
    assert outcome.error == "gave up after 4 attempts in 100 s: timed out"


@pytest.mark.parametrize(
    ("code", "text", "hard"),
    [
        (550, "5.1.1 no such user", True),
        (550, "mailbox does not exist", True),
        (554, "5.7.1 rejected as spam", False),
        (552, "mailbox full", False),
    ],
)
def test_a_5xx_fails_and_only_a_missing_mailbox_is_a_hard_bounce(
    code: int, text: str, hard: bool
) -> None:
    outcome = reply_outcome(code=code, text=text, attempts=1, first_attempt_at=FIRST, now=FIRST)
    assert (outcome.state, outcome.hard_bounce, outcome.next_attempt_at) == ("failed", hard, None)


@pytest.mark.parametrize(
    ("some", "settled"),
    [
        ({"pending": 1, "sent": 3}, None),
        ({"sending": 1}, None),
        ({"held": 1, "failed": 1}, "waiting"),
        ({"retrying": 2, "sent": 1}, "waiting"),
        ({"failed": 1, "sent": 5}, "completed_with_failures"),
        ({"unknown": 1, "excluded": 2}, "completed_with_failures"),
        ({"sent": 5, "excluded": 2}, "completed"),
        ({}, "completed"),
    ],
)
def test_the_settled_state_of_a_run(some: dict[str, int], settled: str | None) -> None:
    assert settled_state(counts(**some)) == settled


@pytest.mark.parametrize(
    ("max_connections", "deliveries", "share"),
    [(4, 1, 4), (4, 2, 2), (5, 2, 3), (4, 8, 1), (1, 3, 1), (3, 0, 3)],
)
def test_fair_shares_of_a_profiles_connections(
    max_connections: int, deliveries: int, share: int
) -> None:
    assert fair_share(max_connections, deliveries) == share


@pytest.mark.parametrize(
    ("rate", "connections", "group"),
    [
        (0.0, 4, 4),  # nothing measured yet: one each
        (20.0, 4, 4),  # a slow server: still one each
        (5000.0, 4, 500),  # a tenth of a second at the rate
        (5001.0, 4, 501),  # rounded up
        (10_000_000.0, 4, MOST_MARKED_AT_ONCE),  # never more than one transaction's worth
    ],
)
def test_the_group_marked_ahead_is_a_tenth_of_a_second_at_the_rate(
    rate: float, connections: int, group: int
) -> None:
    assert mark_group(rate, connections) == group
    # In doubt at most: the connections, as many waiting, and the group.
    assert most_in_doubt(rate, connections) == 2 * connections + group


def test_the_rate_meter_counts_the_last_second() -> None:
    now = [100.0]
    meter = RateMeter(clock=lambda: now[0])
    assert meter.per_second() == 0
    for _ in range(30):  # 300 a second for a second and a half
        meter.add(15)
        now[0] += 0.05
    assert 270 <= meter.per_second() <= 330
    now[0] += 1.2  # then nothing
    assert meter.per_second() == 0
