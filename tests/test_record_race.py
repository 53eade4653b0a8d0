"""Recording results while a reaper makes the same rows `unknown` keeps the counters right.

A run settles by its counters; a counter moved for a row that was not written
(`sending` counted as `sent` while the row had become `unknown`) left the run
`running` for ever. The reaper's write is made here at the worst moment: just
just before ``record`` writes the results: it must find them locked.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from core.clock import SystemClock
from core.delivery import policy, queries, transitions
from core.storage import Database
from tests.delivery_support import assert_counts_match_rows, document, new_run


def test_a_row_reaped_just_before_its_result_is_recorded(db: Database) -> None:
    run_id = new_run(db, document(2, 2525))
    now = SystemClock().now()
    with db.connect() as connection:
        due = queries.load_due(connection, run_id, now, 10)
        assert transitions.mark_sending(connection, run_id, due, now) == {d.id for d in due}
    armed = {"on": True}
    locked_out: list[bool] = []

    def reaper(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # Just before the results are written: a reaper (another process) makes
        # the rows `unknown` if it can. It cannot while record holds them.
        if armed["on"] and statement.startswith("UPDATE recipient SET state="):
            armed["on"] = False
            try:
                with db.engine.connect() as other, other.begin():
                    if other.dialect.name == "postgresql":
                        other.execute(text("SET LOCAL lock_timeout = '300ms'"))
                    else:
                        other.exec_driver_sql("PRAGMA busy_timeout=300")
                    transitions.make_unknown(other, None, now, run_id)
                locked_out.append(False)
            except DBAPIError:
                locked_out.append(True)

    with db.connect() as connection:
        event.listen(connection, "before_cursor_execute", reaper)
        try:
            transitions.record_results(
                connection,
                run_id,
                "inv",
                [
                    transitions.Result(d.id, "sent", sent_at=now, customer_id=d.customer_id)
                    for d in due
                ],
                now,
            )
        finally:
            event.remove(connection, "before_cursor_execute", reaper)
    assert locked_out == [True], "the rows being recorded were left open to a reaper"
    counts = assert_counts_match_rows(db, run_id)
    assert (counts["sent"], counts["unknown"], counts["sending"]) == (2, 0, 0)
    assert policy.settled_state(counts) == "completed"


pytestmark = pytest.mark.timeout(60)
