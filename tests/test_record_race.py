"""Recording results while a reaper makes the same rows `unknown` keeps the counters right.

A run settles by its counters; a counter moved for a row that was not written
(`sending` counted as `sent` while the row had become `unknown`) left the run
`running` for ever. The reaper's write is made here at the worst moment: just
before ``record_results`` writes the results, for one of the two rows. The row
it reaped stays `unknown` (it is never overwritten), the other is `sent`, and
the counters say exactly that.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from core.clock import SystemClock
from core.delivery import policy, queries, transitions
from core.states import SENDING, UNKNOWN
from core.storage import Database
from tests.delivery_support import assert_counts_match_rows, document, new_run, states


def test_a_row_reaped_just_before_its_result_is_recorded(db: Database) -> None:
    run_id = new_run(db, document(2, 2525))
    now = SystemClock().now()
    with db.connect() as connection:
        due = queries.load_due(connection, run_id, now, 10)
        assert transitions.mark_sending(connection, run_id, due, now) == {d.id for d in due}
    reaped = due[0]
    armed = {"on": True}

    def reaper(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # Just before the results are written: a reaper (another process) makes
        # one of the rows `unknown`, and commits.
        if armed["on"] and statement.startswith("UPDATE recipient SET state"):
            armed["on"] = False
            with db.engine.connect() as other, other.begin():
                transitions.move(other, run_id, [reaped.id], SENDING, UNKNOWN, now)

    with db.connect() as connection:
        event.listen(connection, "before_cursor_execute", reaper)
        try:
            transitions.record_results(
                connection,
                run_id,
                "inv",
                [
                    transitions.Result(
                        d.id, "sent", sent_at=now, customer_id=d.customer_id, address=d.address
                    )
                    for d in due
                ],
                now,
            )
        finally:
            event.remove(connection, "before_cursor_execute", reaper)
    assert not armed["on"], "the reaper did not run"
    assert states(db, run_id) == {reaped.address: "unknown", due[1].address: "sent"}
    counts = assert_counts_match_rows(db, run_id)
    assert (counts["sent"], counts["unknown"], counts["sending"]) == (1, 1, 0)
    assert policy.settled_state(counts) == "completed_with_failures"


pytestmark = pytest.mark.timeout(60)
