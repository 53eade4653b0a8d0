"""A run snapshots its plan as the plan is decided: a million candidates are never held."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from core.clock import FixedClock, parse_instant
from core.delivery import starting
from core.planner.plan import Candidate, make_plan
from core.storage import Database
from core.storage.models import Recipient
from tests.conftest import BLUE_LAGOON, STORY_AT, load_ok, sample


def test_recipients_are_written_while_the_plan_is_still_being_decided(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_ok(db, sample(BLUE_LAGOON))
    at = parse_instant(STORY_AT)
    expected = make_plan(db, "invoice-email", at, environ={}).candidates
    assert len(expected) > 4
    monkeypatch.setattr(starting, "INSERT_BATCH", 2)
    stored_when_yielded: list[int] = []
    planned = starting.iter_plan

    def watched(connection: Connection, *args: Any, **kwargs: Any) -> Iterator[Candidate]:
        recipient = Recipient.__table__
        for candidate in planned(connection, *args, **kwargs):
            count = select(func.count()).select_from(recipient)
            stored_when_yielded.append(connection.execute(count).scalar_one())
            yield candidate

    monkeypatch.setattr(starting, "iter_plan", watched)
    run_id = starting.create_run(db, "invoice-email", at, FixedClock(at), environ={})
    # Two by two: by the fifth candidate, the first four are stored.
    assert stored_when_yielded[:5] == [0, 0, 2, 2, 4]
    with db.session() as session:
        stored = session.execute(
            select(Recipient.customer_id, Recipient.address, Recipient.document_id)
            .where(Recipient.run_id == run_id)
            .order_by(Recipient.position)
        ).all()
    assert [tuple(row) for row in stored] == [(c.customer, c.address, c.document) for c in expected]
