"""Named reads of delivery: the recipients due now, the run's row and what its messages
are built with (``run_settings``), when the next is due.

Also the one write that is not a state change: reserving due recipients for
a delivering process (``recipient.claimed_by``), so that no other process
takes them while this one builds their messages. Marking them `sending` is a
transition (``transitions.mark_sending``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    func,
    literal,
    select,
    update,
)

from core.messages.compose import Templates, templates_of
from core.messages.due import Due
from core.smtp_profiles import ProfileSettings
from core.states import (
    HELD,
    PENDING,
    RETRYING,
)
from core.storage.models import (
    MessageRun,
    Recipient,
    RunCount,
    SmtpProfile,
    table_of,
)
from core.storage.sql import padded

RUN = table_of(MessageRun)
RECIPIENT = table_of(Recipient)
COUNT = table_of(RunCount)


# -- due recipients ----------------------------------------------------------------------


DUE_COLUMNS = (
    RECIPIENT.c.id,
    RECIPIENT.c.state,
    RECIPIENT.c.position,
    RECIPIENT.c.customer_id,
    RECIPIENT.c.contact_id,
    RECIPIENT.c.address,
    RECIPIENT.c.document_id,
    RECIPIENT.c.offset_days,
    RECIPIENT.c.message_id,
    RECIPIENT.c.attempts,
    RECIPIENT.c.first_attempt_at,
)
# Retries first, then released holds, then pending; each with the column saying when.
DUE_ORDER = (
    (RETRYING, RECIPIENT.c.next_attempt_at),
    (HELD, RECIPIENT.c.send_after),
    (PENDING, None),
)


def _due(run_id: int, state: str, due_column: Any, now: datetime, limit: int, *columns: Any) -> Any:
    """The first ``limit`` recipients of the run in ``state`` that are due at ``now``: pending
    ones in plan order; held and retrying ones earliest due first, then in plan order, read
    from their state's partial index (``in_state``), so that those not yet due are not read."""
    if due_column is None:
        query = select(*columns).where(RECIPIENT.c.run_id == run_id, RECIPIENT.c.state == state)
        return query.order_by(RECIPIENT.c.position).limit(limit)
    query = select(*columns).where(RECIPIENT.c.run_id == run_id, in_state(state), due_column <= now)
    return query.order_by(due_column, RECIPIENT.c.position).limit(limit)


def in_state(state: str) -> ColumnElement[bool]:
    """``state = '<state>'`` written out, not a parameter: the condition of the state's
    partial index (models.due_index), which a database uses only when it can see it holds
    (PostgreSQL's generic plans cannot see a parameter's value)."""
    return RECIPIENT.c.state == literal(state, literal_execute=True)


def load_due(connection: Connection, run_id: int, now: datetime, limit: int) -> list[Due]:
    """Up to ``limit`` recipients due now, without reserving them (tests make crashes with it)."""
    found: list[Due] = []
    for state, due_column in DUE_ORDER:
        if len(found) >= limit:
            break
        query = _due(run_id, state, due_column, now, limit - len(found), *DUE_COLUMNS)
        found.extend(Due(*row) for row in connection.execute(query).all())
    return found


def reserve_due(
    connection: Connection, run_id: int, worker_id: str, now: datetime, limit: int
) -> list[Due]:
    """Reserve up to ``limit`` due recipients for ``worker_id``: nobody else will take them.

    The earliest due retries first, then the earliest due released holds, then pending
    ones in plan order (each state's batch handed over in plan order). On PostgreSQL the
    rows are picked ``FOR UPDATE SKIP LOCKED``: workers reserving at the same moment take
    different rows without waiting for each other. Every reservation is one guarded
    UPDATE (``claimed_by IS NULL``), so on SQLite too a recipient is never reserved
    twice. (The column keeps its old name, ``claimed_by``.)
    """
    found: list[Due] = []
    for state, due_column in DUE_ORDER:
        if len(found) >= limit:
            break
        pick = _due(run_id, state, due_column, now, limit - len(found), RECIPIENT.c.id).where(
            RECIPIENT.c.claimed_by.is_(None)
        )
        if connection.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        # Two statements, not UPDATE … WHERE id IN (SELECT … LIMIT … FOR UPDATE):
        # PostgreSQL may plan that as a join that rescans the run per row.
        ids = list(connection.execute(pick).scalars())
        if not ids:
            continue
        rows = connection.execute(
            update(RECIPIENT)
            .where(
                RECIPIENT.c.id.in_(padded(ids)),
                RECIPIENT.c.state == state,
                RECIPIENT.c.claimed_by.is_(None),
            )
            .values(claimed_by=worker_id)
            .returning(*DUE_COLUMNS)
        ).all()
        # DUE_COLUMNS are Due's fields, in order.
        found.extend(sorted((Due(*row) for row in rows), key=lambda d: d.position))
    return found


def run_row(connection: Connection, run_id: int) -> Any:
    return connection.execute(select(RUN).where(RUN.c.id == run_id)).one()


def run_settings(connection: Connection, run_id: int) -> tuple[ProfileSettings, Templates]:
    """The run's SMTP profile and its definition's templates."""
    run = run_row(connection, run_id)
    profile_table = table_of(SmtpProfile)
    profile = ProfileSettings.from_row(
        connection.execute(
            select(profile_table).where(profile_table.c.id == run.smtp_profile_id)
        ).one()
    )
    return profile, templates_of(connection, run.definition_id)


def next_due(connection: Connection, run_id: int, only: str | None = None) -> datetime | None:
    """When the next retry or held recipient (``only``: of that state) becomes due."""
    retry = connection.execute(
        select(func.min(RECIPIENT.c.next_attempt_at)).where(
            RECIPIENT.c.run_id == run_id, in_state(RETRYING)
        )
    ).scalar()
    held = connection.execute(
        select(func.min(RECIPIENT.c.send_after)).where(RECIPIENT.c.run_id == run_id, in_state(HELD))
    ).scalar()
    if only == RETRYING:
        held = None
    elif only == HELD:
        retry = None
    times: list[datetime] = [t for t in (retry, held) if t is not None]
    return min(times) if times else None
