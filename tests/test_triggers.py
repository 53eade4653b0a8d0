"""Routines and events, each exactly once — with a fixed clock, never sleeping for minutes."""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from core.clock import FixedClock, parse_instant
from core.delivery.starting import create_run
from core.planner.explain import explain_customer
from core.run_info import get_run, list_runs
from core.storage import Database
from core.storage.models import MessageRun, TriggerFire, table_of
from core.triggers.events import EventError, fire_event
from core.triggers.routines import fire_due, fires, list_routines, set_enabled
from core.triggers.schedule import fire_times, next_fire
from tests.conftest import MINIMAL, load_ok


def local(instants: list[datetime], zone: str) -> list[str]:
    return [i.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %z") for i in instants]


# -- fire times across DST ---------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # Sydney springs forward at 02:00 on 4 October 2026: 02:30 does not exist.
        (
            "Australia/Sydney",
            "2026-10-03T00:00:00+10:00",
            ["2026-10-03 02:30 +1000", "2026-10-04 03:00 +1100", "2026-10-05 02:30 +1100"],
        ),
        # Sydney falls back at 03:00 on 5 April 2026: 02:30 happens twice; once here.
        (
            "Australia/Sydney",
            "2026-04-04T00:00:00+11:00",
            ["2026-04-04 02:30 +1100", "2026-04-05 02:30 +1100", "2026-04-06 02:30 +1000"],
        ),
        # New York springs forward at 02:00 on 8 March 2026.
        (
            "America/New_York",
            "2026-03-07T00:00:00-05:00",
            ["2026-03-07 02:30 -0500", "2026-03-08 03:00 -0400", "2026-03-09 02:30 -0400"],
        ),
    ],
)
def test_a_0230_routine_fires_once_a_night_across_dst(
    zone: str, after: str, expected: list[str]
) -> None:
    start = parse_instant(after)
    assert local(fire_times("30 2 * * *", zone, start, start + timedelta(days=3)), zone) == expected


def test_a_repeated_hour_fires_once_and_a_skipped_hour_once() -> None:
    # New York falls back at 02:00 on 1 November 2026: 01:30 happens twice.
    start = parse_instant("2026-11-01T00:00:00-04:00")
    times = fire_times("30 1 * * *", "America/New_York", start, start + timedelta(days=1))
    assert local(times, "America/New_York") == ["2026-11-01 01:30 -0400"]
    # Every 15 minutes during the hour that does not exist: one fire, after the gap.
    gap = parse_instant("2026-03-08T00:00:00-05:00")
    times = fire_times("*/15 2 * * *", "America/New_York", gap, gap + timedelta(hours=6))
    assert local(times, "America/New_York") == ["2026-03-08 03:00 -0400"]
    # Hourly across the fall-back night (5 real hours): every wall-clock hour once.
    times = fire_times("0 * * * *", "America/New_York", start, start + timedelta(hours=5))
    assert local(times, "America/New_York") == [
        "2026-11-01 01:00 -0400",
        "2026-11-01 02:00 -0500",
        "2026-11-01 03:00 -0500",
        "2026-11-01 04:00 -0500",
    ]


def test_next_fire_is_local() -> None:
    at = parse_instant("2026-11-23T10:00:00+11:00")
    assert next_fire("0 9 * * *", "Australia/Sydney", at) == parse_instant(
        "2026-11-24T09:00:00+11:00"
    )


# -- routines in the database --------------------------------------------------------


def routine_document(cron: str = "0 9 * * *", **organisation: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    doc["organisation"].update(timezone="Australia/Sydney", **organisation)
    doc["definitions"][0]["trigger"] = {"type": "routine", "cron": cron, "enabled": True}
    doc["definitions"][0]["dedup"] = "per_document"
    doc["documents"][0]["due_date"] = "2026-11-24"
    return doc


def runs_of(db: Database) -> list[Any]:
    return list_runs(db)


def test_a_routine_fires_once_when_its_time_comes(db: Database) -> None:
    load_ok(db, routine_document())
    clock = FixedClock(parse_instant("2026-11-24T08:58:00+11:00"))
    assert fire_due(db, clock) == []  # first look: the routine is watched from now
    clock.set(parse_instant("2026-11-24T08:59:30+11:00"))
    assert fire_due(db, clock) == []
    clock.set(parse_instant("2026-11-24T09:00:01+11:00"))
    (run_id,) = fire_due(db, clock)
    assert fire_due(db, clock) == []  # the same moment again: nothing more
    clock.set(parse_instant("2026-11-24T09:05:00+11:00"))
    assert fire_due(db, clock) == []
    run = get_run(db, run_id)
    assert run.started_by == "routine inv @ 2026-11-24 09:00 +1100"
    assert run.planned_at == parse_instant("2026-11-24T09:00:00+11:00")
    (fire,) = fires(db, "inv")
    assert (fire.outcome, fire.run_id) == ("started", run_id)
    (view,) = list_routines(db, clock.now())
    assert view.last is not None and view.last["run"] == run_id
    assert view.next_fire == parse_instant("2026-11-25T09:00:00+11:00")
    assert view.blockers == []


def test_a_day_of_downtime_gives_one_late_run_and_records_the_skipped(db: Database) -> None:
    load_ok(db, routine_document(cron="0 * * * *"))
    clock = FixedClock(parse_instant("2026-11-23T10:30:00+11:00"))
    fire_due(db, clock)
    clock.set(parse_instant("2026-11-24T10:40:00+11:00"))  # the workers were down a day
    (run_id,) = fire_due(db, clock)
    recorded = fires(db, "inv")
    outcomes = [f.outcome for f in recorded]
    assert outcomes[0] == "late" and outcomes.count("late") == 1
    assert outcomes.count("skipped") == 23 and len(recorded) == 24
    assert recorded[0].scheduled_for == parse_instant("2026-11-24T10:00:00+11:00")
    assert "only the latest missed fire" in (recorded[1].detail or "")
    assert get_run(db, run_id).started_by.endswith("(late)")
    (view,) = list_routines(db, clock.now())
    assert view.last is not None
    assert (view.last["outcome"], view.last["skipped_fires"]) == ("late", 23)


def test_a_routine_blocked_by_the_organisations_toggle_records_why(db: Database) -> None:
    load_ok(db, routine_document(outbound={"auto_send_invoices": False}))
    clock = FixedClock(parse_instant("2026-11-24T08:00:00+11:00"))
    fire_due(db, clock)
    clock.set(parse_instant("2026-11-24T09:00:05+11:00"))
    assert fire_due(db, clock) == []
    (fire,) = fires(db, "inv")
    assert fire.outcome == "blocked" and fire.run_id is None
    assert "auto_send_disabled" in (fire.detail or "") and "auto_send_invoices" in fire.detail
    assert runs_of(db) == []
    (view,) = list_routines(db, clock.now())
    assert [b.code for b in view.blockers] == ["auto_send_disabled"]


def test_a_disabled_routine_does_not_fire_and_says_so(db: Database) -> None:
    load_ok(db, routine_document())
    set_enabled(db, "inv", False)
    clock = FixedClock(parse_instant("2026-11-24T08:00:00+11:00"))
    fire_due(db, clock)
    clock.set(parse_instant("2026-11-24T09:00:05+11:00"))
    assert fire_due(db, clock) == [] and fires(db, "inv") == []
    (view,) = list_routines(db, clock.now())
    assert view.next_fire is None and [b.code for b in view.blockers] == ["disabled"]


@pytest.mark.postgresql
@pytest.mark.parametrize("racers", [2, 4])
def test_workers_racing_for_the_same_fire_time_start_one_run(
    postgresql_db: Database, racers: int
) -> None:
    db = postgresql_db
    load_ok(db, routine_document())
    clock = FixedClock(parse_instant("2026-11-24T08:00:00+11:00"))
    fire_due(db, clock)
    clock.set(parse_instant("2026-11-24T09:00:00.500+11:00"))
    start = threading.Barrier(racers)
    started: list[list[int]] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            start.wait()
            started.append(fire_due(db, clock))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(len(s) for s in started) == [0] * (racers - 1) + [1]
    with db.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(table_of(MessageRun))).scalar() == 1
        )
        assert (
            connection.execute(select(func.count()).select_from(table_of(TriggerFire))).scalar()
            == 1
        )


# -- events ------------------------------------------------------------------------------


def event_document() -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    second = copy.deepcopy(doc["customers"][0])
    second.update(id="C2", name="Bruno")
    second["contacts"][0].update(id="C2-1", name="Bruno")
    second["contacts"][0]["addresses"][0]["address"] = "bruno@example.org"
    second["services"][0]["id"] = "S2"
    doc["customers"].append(second)
    doc["definitions"].append(
        {
            "id": "selling",
            "name": "Job set to selling",
            "kind": "status_update",
            "address_key": "billing",
            "smtp_profile": "main",
            "trigger": {"type": "event", "event": "job_selling"},
            "dedup": "per_trigger",
            "template": {"subject": "Your job is on sale", "text": "Hello"},
        }
    )
    return doc


def test_an_event_fired_twice_for_the_same_customer_targets_them_once(db: Database) -> None:
    load_ok(db, event_document())
    clock = FixedClock(parse_instant("2026-11-23T10:00:00+11:00"))
    first = fire_event(db, "job_selling", ["C1"], clock.now(), clock, started_by="test")
    (fired,) = first.fired
    assert fired.run_id is not None and fired.counts["pending"] == 1
    assert get_run(db, fired.run_id).total == 1  # only the customer named
    second = fire_event(db, "job_selling", ["C1", "C2"], clock.now(), clock, started_by="test")
    (again,) = second.fired
    assert again.run_id is not None
    assert again.counts["pending"] == 1 and again.counts["excluded"] == 1
    explained = explain_customer(db, "C1", clock.now(), definition_id="selling")
    text = json.dumps(explained.as_json())
    assert "already_targeted" in text and f"by run {fired.run_id}" in text


def test_an_event_nobody_listens_to_warns_and_bad_input_changes_nothing(db: Database) -> None:
    load_ok(db, event_document())
    clock = FixedClock(parse_instant("2026-11-23T10:00:00+11:00"))
    outcome = fire_event(db, "job_closed", [], clock.now(), clock, started_by="test")
    assert outcome.fired == [] and "no definition listens" in outcome.warnings[0]
    with pytest.raises(EventError, match="not an event name"):
        fire_event(db, "Job Selling", [], clock.now(), clock, started_by="test")
    with pytest.raises(EventError, match="unknown customer"):
        fire_event(db, "job_selling", ["C1", "C404"], clock.now(), clock, started_by="test")
    assert list_runs(db) == []


def test_a_manual_run_of_an_event_definition_is_not_blocked(db: Database) -> None:
    """auto_send_disabled holds for triggers only; a person may still start the run."""
    doc = event_document()
    load_ok(db, doc)
    run_id = create_run(
        db, "selling", datetime(2026, 11, 23, tzinfo=UTC), FixedClock(datetime.now(UTC))
    )
    assert get_run(db, run_id).total == 2
