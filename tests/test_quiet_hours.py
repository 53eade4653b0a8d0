"""Quiet hours: windows wrapping midnight, their edges, and days when clocks change."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from core.quiet_hours import QuietHours, local_instant, zone
from core.storage import Database
from tests.planning import only, plan_of

NIGHT = QuietHours.parse("21:00", "09:00")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        ("20:59", False),
        ("21:00", True),
        ("23:59", True),
        ("00:00", True),
        ("08:59", True),
        ("09:00", False),
        ("12:00", False),
    ],
)
def test_a_window_that_wraps_midnight(local: str, inside: bool) -> None:
    assert NIGHT.contains(time.fromisoformat(local)) is inside


def test_a_window_within_one_day() -> None:
    lunch = QuietHours.parse("12:00", "13:30")
    assert [
        lunch.contains(time.fromisoformat(t)) for t in ("11:59", "12:00", "13:29", "13:30")
    ] == [
        False,
        True,
        True,
        False,
    ]


def test_a_window_whose_start_equals_its_end_is_empty() -> None:
    empty = QuietHours.parse("09:00", "09:00")
    assert not any(empty.contains(time(h, m)) for h in range(24) for m in (0, 30))


def test_send_after_is_the_next_local_end() -> None:
    sydney = zone("Australia/Sydney")
    # 22:00 in Sydney (AEDT, +11): the end is 09:00 the next morning.
    assert NIGHT.send_after(utc("2026-11-23T22:00:00+11:00"), sydney) == utc(
        "2026-11-24T09:00:00+11:00"
    )
    # 03:00: the end is 09:00 the same morning.
    assert NIGHT.send_after(utc("2026-11-24T03:00:00+11:00"), sydney) == utc(
        "2026-11-24T09:00:00+11:00"
    )
    assert NIGHT.send_after(utc("2026-11-24T09:00:00+11:00"), sydney) is None


def test_an_end_in_the_spring_forward_gap_means_the_first_instant_after_it() -> None:
    """Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist."""
    window = QuietHours.parse("23:00", "02:30")
    berlin = zone("Europe/Berlin")
    send_after = window.send_after(utc("2026-03-29T01:00:00+01:00"), berlin)
    assert send_after == utc("2026-03-29T03:00:00+02:00")  # 01:00 UTC


def test_an_end_that_occurs_twice_means_its_first_occurrence() -> None:
    """Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice."""
    window = QuietHours.parse("23:00", "02:30")
    berlin = zone("Europe/Berlin")
    send_after = window.send_after(utc("2026-10-25T01:00:00+02:00"), berlin)
    assert send_after == utc("2026-10-25T02:30:00+02:00")  # the first 02:30 (00:30 UTC)


def test_inside_the_repeated_hour() -> None:
    """Berlin, 2026-10-25, window 02:00-02:30: the local hour 02:00-03:00 happens twice."""
    window = QuietHours.parse("02:00", "02:30")
    berlin = zone("Europe/Berlin")
    # 02:10 CEST, the first pass: quiet until the first 02:30.
    first = utc("2026-10-25T02:10:00+02:00")
    assert window.send_after(first, berlin) == utc("2026-10-25T02:30:00+02:00")
    # 02:10 CET, the second pass: the first 02:30 is past; the next end is the second one.
    second = utc("2026-10-25T02:10:00+01:00")
    assert window.send_after(second, berlin) == utc("2026-10-25T02:30:00+01:00")
    # Never an instant before `at`.
    assert window.send_after(second, berlin) > second  # type: ignore[operator]


def test_gaps_in_another_hemisphere() -> None:
    """Sydney, 2026-10-04: 02:00 AEST jumps to 03:00 AEDT."""
    sydney = zone("Australia/Sydney")
    assert local_instant(date(2026, 10, 4), time(2, 15), sydney) == utc("2026-10-04T03:00:00+11:00")
    assert local_instant(date(2026, 10, 4), time(3, 15), sydney) == utc("2026-10-04T03:15:00+11:00")
    # Sydney, 2026-04-05: 03:00 AEDT goes back to 02:00 AEST: 02:30 twice, the first is +11.
    assert local_instant(date(2026, 4, 5), time(2, 30), sydney) == utc("2026-04-05T02:30:00+11:00")


def test_deferred_candidates_use_the_customer_timezone_else_the_organisation(
    db: Database, minimal: dict[str, Any]
) -> None:
    minimal["organisation"]["timezone"] = "Australia/Sydney"
    minimal["definitions"][0]["quiet_hours"] = {"start": "21:00", "end": "09:00"}
    at = "2026-11-23T23:00:00+00:00"  # 10:00 in Sydney, 23:00 in London
    assert only(plan_of(db, minimal, at=at)).decision == "included"
    minimal["customers"][0]["timezone"] = "Europe/London"
    candidate = only(plan_of(db, minimal, at=at))
    assert (candidate.decision, candidate.reasons) == ("deferred", ())
    assert candidate.send_after == utc("2026-11-24T09:00:00+00:00")


def test_an_excluded_candidate_is_not_deferred(db: Database, minimal: dict[str, Any]) -> None:
    minimal["definitions"][0]["quiet_hours"] = {"start": "00:00", "end": "23:59"}
    minimal["customers"][0]["contacts"][0]["allow_email"] = False
    candidate = only(plan_of(db, minimal))
    assert (candidate.decision, candidate.send_after) == ("excluded", None)
