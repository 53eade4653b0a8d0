"""Held and retrying recipients are found by when they are due, from their state's partial
index: a run holding a million recipients overnight is not read whole each time a worker
looks for due ones, nor each time the console asks when the next one is due."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event, update

from core.clock import FixedClock, parse_instant
from core.delivery import queries
from core.states import HELD, RETRYING, WAITING
from core.storage import Database
from core.storage.models import MessageRun, Recipient, table_of
from core.worker import runs_to_deliver
from tests.delivery_support import document, new_run

RECIPIENT, RUN = table_of(Recipient), table_of(MessageRun)
STATES_INDEXES = ((HELD, "ix_recipient_held_due"), (RETRYING, "ix_recipient_retrying_due"))
NOW = parse_instant("2026-11-23T10:00:00Z")


def held_and_retrying(db: Database) -> int:
    """A run of 12: positions 0-5 held, 6-11 retrying, due at minutes that are not in
    plan order; those at +minutes are not due at NOW."""
    run_id = new_run(db, document(12, 2525))
    minutes = [30, -5, -20, 10, -20, -1]
    with db.connect() as connection:
        for position in range(12):
            due = NOW + timedelta(minutes=minutes[position % 6])
            state, column = (HELD, "send_after") if position < 6 else (RETRYING, "next_attempt_at")
            connection.execute(
                update(RECIPIENT)
                .where(RECIPIENT.c.run_id == run_id, RECIPIENT.c.position == position)
                .values(state=state, **{column: due})
            )
    return run_id


def test_due_holds_and_retries_come_earliest_due_first_and_none_before_their_time(
    db: Database,
) -> None:
    run_id = held_and_retrying(db)
    with db.connect() as connection:
        due = queries.load_due(connection, run_id, NOW, 100)
        # Retries, then holds; each earliest due first, plan order among equals; then pending.
        assert [d.position for d in due] == [8, 10, 7, 11, 2, 4, 1, 5]
        assert queries.next_due(connection, run_id) == NOW - timedelta(minutes=20)
        later = queries.load_due(connection, run_id, NOW + timedelta(minutes=30), 100)
        assert sorted(d.position for d in later) == list(range(12))
        reserved = queries.reserve_due(connection, run_id, "w1", NOW, 3)
        assert [d.position for d in reserved] == [7, 8, 10]  # the first 3, by position
        assert [d.position for d in queries.reserve_due(connection, run_id, "w2", NOW, 3)] == [
            11,
            2,
            4,
        ]


def statements(db: Database, run: Any) -> list[tuple[str, Any]]:
    """The statements ``run`` sends to the database, with their parameters."""
    sent: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    return sent


def test_the_due_queries_read_the_partial_indexes(db: Database) -> None:
    run_id = held_and_retrying(db)

    with db.connect() as connection:
        connection.execute(update(RUN).where(RUN.c.id == run_id).values(state=WAITING))

    def ask() -> None:
        with db.connect() as connection:
            queries.load_due(connection, run_id, NOW, 100)
            queries.next_due(connection, run_id)
            assert runs_to_deliver(connection, FixedClock(NOW)) == [run_id]

    asked = [s for s in statements(db, ask) if "state = 'held'" in s[0] or "'retrying'" in s[0]]
    # Due retries, due holds, the next retry, the next hold; the worker's runs with any due.
    assert len(asked) == 5
    with db.engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        if db.engine.dialect.name == "postgresql":
            cursor.execute("SET enable_seqscan = off")  # a table this small is read whole
        for statement, parameters in asked:
            explain = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
            cursor.execute(explain + statement, parameters)
            plan = " ".join(str(row) for row in cursor.fetchall())
            for state, index in STATES_INDEXES:
                if f"state = '{state}'" in statement:
                    assert index in plan, (statement, plan)
            if "FROM message_run" not in statement:  # (the worker's runs are sorted: a few)
                assert "TEMP B-TREE" not in plan and "Sort" not in plan, (statement, plan)
