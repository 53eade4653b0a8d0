"""Creating a run keeps nothing per recipient: snapshotting four times the candidates
takes no more memory (Python's own allocations, counted by tracemalloc: a bound
that does not depend on the machine's speed)."""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from core.clock import FixedClock, parse_instant
from core.delivery import starting
from core.planner.load import load_definition
from core.planner.plan import DEFERRED, EXCLUDED, INCLUDED, Candidate
from core.planner.reasons import Reason
from core.storage import Database
from core.storage.models import Customer, History, Recipient
from tests.conftest import BLUE_LAGOON, STORY_AT, load_ok, sample

AT = parse_instant(STORY_AT)


def candidates(count: int) -> Iterator[Candidate]:
    """``count`` candidates of as many customers, made one at a time, each
    included, deferred or excluded in turn (an excluded one with its reason)."""
    for i in range(count):
        decision = (INCLUDED, DEFERRED, EXCLUDED)[i % 3]
        reasons = (
            (Reason("suppressed", f"billing address c{i}@example.org is suppressed"),)
            if decision == EXCLUDED
            else ()
        )
        yield Candidate(
            customer=f"C{i:08d}",
            contact=f"C{i:08d}-0",
            address=f"c{i}@example.org",
            document=f"C{i:08d}-I0",
            label=f"Invoice {i:08d}",
            decision=decision,
            reasons=reasons,
            send_after=AT + timedelta(hours=i % 5) if decision == DEFERRED else None,
            offset_days=0,
        )


def snapshot_peak(db: Database, count: int) -> tuple[int, int]:
    """The run of ``count`` made-up candidates: its id and the peak of Python's
    memory while it was created (a ``per_trigger`` definition: the targets too)."""
    with db.connect() as connection:
        definition = dataclasses.replace(
            load_definition(connection, "invoice-email"), dedup="per_trigger"
        )
    tracemalloc.start()
    try:
        with db.connect() as connection:
            run_id = starting.snapshot_plan(
                connection, definition, AT, candidates(count), FixedClock(AT), started_by="t"
            )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return run_id, peak


def test_snapshotting_four_times_the_candidates_takes_no_more_memory(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_ok(db, sample(BLUE_LAGOON))
    with db.connect() as connection:  # the customers the made-up candidates name
        connection.execute(
            insert(Customer),
            [{"id": f"C{i:08d}", "name": f"Customer {i}", "attributes": {}} for i in range(12_000)],
        )
    monkeypatch.setattr(starting, "INSERT_BATCH", 256)
    snapshot_peak(db, 300)  # warm: statements compiled, caches filled
    small_run, small = snapshot_peak(db, 3_000)
    large_run, large = snapshot_peak(db, 12_000)
    with db.connect() as connection:
        for run_id, count in ((small_run, 3_000), (large_run, 12_000)):
            stored = connection.execute(
                select(func.count())
                .select_from(Recipient)
                .where(Recipient.__table__.c.run_id == run_id)
            ).scalar_one()
            targeted = connection.execute(
                select(func.count())
                .select_from(History)
                .where(History.__table__.c.run_id == run_id)
            ).scalar_one()
            assert (stored, targeted) == (count, count - count // 3)
    # Holding 9,000 more recipients (or their customers' ids) would take megabytes;
    # a batch of 256 rows is the same at both sizes.
    assert large - small < 256 * 1024, (small, large)


@pytest.mark.parametrize(
    "reasons",
    [
        (),
        (Reason("suppressed", "billing address ana@example.org is suppressed"),),
        (
            Reason("document_status_not_targeted", 'invoice "C1-I0" is a concept \\ draft'),
            Reason("x", "Zoë, line\nbreak, \u2028 and 😀"),
            Reason("already_sent", "sent by run 4", run=4),
        ),
    ],
)
def test_a_recipients_reasons_are_the_json_of_their_as_json(reasons: tuple[Reason, ...]) -> None:
    assert starting.reasons_json(reasons) == json.dumps([r.as_json() for r in reasons])
