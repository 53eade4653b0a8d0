"""The named queries of delivery: every state change of a run or a recipient.

Each recipient transition is guarded by the state it leaves
(``… WHERE id IN (…) AND state = 'pending'``) and moves the run's counters in
the same transaction, so the counts another process reads are always the
rows' own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from core.addresses import fold
from core.delivery.states import (
    COMPLETED,
    COMPLETED_WITH_FAILURES,
    FAILED,
    HELD,
    LEASE_SECONDS,
    PENDING,
    RETRYING,
    RUNNING,
    SENDING,
    SENT,
    UNKNOWN,
    WAITING,
)
from core.interchange.parse import history_fingerprint
from core.storage.models import History, MessageRun, Recipient, RunCount, Suppression, table_of

RUN = table_of(MessageRun)
RECIPIENT = table_of(Recipient)
COUNT = table_of(RunCount)


def bump(
    connection: Connection,
    run_id: int,
    deltas: Counter[str] | dict[str, int],
    shard: int = 0,
) -> None:
    """Move the run's counters by ``deltas`` (state → change), in one statement.

    A process delivering the run moves its own ``shard`` (rows made as needed).
    """
    moves = {state: delta for state, delta in deltas.items() if delta}
    if not moves:
        return
    if shard == 0:
        change = case(*((COUNT.c.state == state, delta) for state, delta in moves.items()), else_=0)
        connection.execute(
            update(COUNT)
            .where(COUNT.c.run_id == run_id, COUNT.c.shard == 0, COUNT.c.state.in_(list(moves)))
            .values(n=COUNT.c.n + change)
        )
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(COUNT)
    statement = statement.on_conflict_do_update(
        index_elements=["run_id", "state", "shard"],
        set_={"n": COUNT.c.n + statement.excluded.n},
    )
    connection.execute(
        statement,
        [
            {"run_id": run_id, "state": state, "shard": shard, "n": delta}
            for state, delta in sorted(moves.items())
        ],
    )


def move(
    connection: Connection,
    run_id: int,
    ids: Sequence[int] | None,
    source: str,
    target: str,
    now: datetime,
    shard: int = 0,
    **values: Any,
) -> list[int]:
    """The one recipient transition: ``source`` → ``target`` for ``ids`` (all when None)."""
    if ids is None:
        condition = and_(RECIPIENT.c.run_id == run_id, RECIPIENT.c.state == source)
    elif not ids:
        return []
    else:
        # By primary key: the ids are the run's own, and naming the run here
        # would make SQLite walk the run's index instead.
        condition = and_(RECIPIENT.c.id.in_(list(ids)), RECIPIENT.c.state == source)
    moved = list(
        connection.execute(
            update(RECIPIENT)
            .where(condition)
            .values(state=target, updated_at=now, **values)
            .returning(RECIPIENT.c.id)
        ).scalars()
    )
    if moved:
        bump(connection, run_id, {source: -len(moved), target: len(moved)}, shard)
    return moved


# -- leases --------------------------------------------------------------------


def acquire_lease(
    connection: Connection, run_id: int, owner: str, now: datetime, seconds: float = LEASE_SECONDS
) -> bool:
    """Take the run for ``owner`` unless a live lease of someone else holds it."""
    result = connection.execute(
        update(RUN)
        .where(
            RUN.c.id == run_id,
            or_(
                RUN.c.lease_owner.is_(None),
                RUN.c.lease_expires_at < now,
                RUN.c.lease_owner == owner,
            ),
        )
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
    )
    return result.rowcount == 1


def renew_lease(
    connection: Connection, run_id: int, owner: str, now: datetime, seconds: float = LEASE_SECONDS
) -> bool:
    """Extend the lease; False when ``owner`` no longer holds it."""
    result = connection.execute(
        update(RUN)
        .where(RUN.c.id == run_id, RUN.c.lease_owner == owner)
        .values(lease_expires_at=now + timedelta(seconds=seconds))
    )
    return result.rowcount == 1


def release_lease(connection: Connection, run_id: int, owner: str) -> None:
    connection.execute(
        update(RUN)
        .where(RUN.c.id == run_id, RUN.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )


# -- recovery --------------------------------------------------------------------


def recover_orphans(connection: Connection, run_id: int, now: datetime) -> int:
    """Recipients left `sending` by a process that is gone become `unknown`.

    Dead workers are reaped (their claims go back, their `sending` become
    `unknown`), and so are this run's `sending` recipients that name no
    claimer at all (left by a process of an older version).
    """
    from core.delivery import workers

    reaped = workers.reap(connection)
    unclaimed = workers.orphan_sending(connection, None, now, run_id)
    return reaped.get(run_id, 0) + unclaimed.get(run_id, 0)


def resend_unknown(connection: Connection, run_id: int, now: datetime) -> int:
    """The operator's explicit choice: send the `unknown` recipients again.

    Not those handed on to a follow-up run: that run sends them, or has.
    """
    ids = connection.execute(
        select(RECIPIENT.c.id).where(
            RECIPIENT.c.run_id == run_id,
            RECIPIENT.c.state == UNKNOWN,
            RECIPIENT.c.handed_on_to.is_(None),
        )
    ).scalars().all()
    moved = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        moved += len(move(connection, run_id, chunk, UNKNOWN, PENDING, now, error=None))
    return moved


# -- claiming ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """A recipient that may be sent now, with what its message is built from."""

    id: int
    state: str
    position: int
    customer_id: str
    contact_id: str | None
    address: str
    document_id: str | None
    offset_days: int | None
    message_id: str
    attempts: int


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
)
# Retries first, then released holds, then pending; each with the column saying when.
DUE_ORDER = (
    (RETRYING, RECIPIENT.c.next_attempt_at),
    (HELD, RECIPIENT.c.send_after),
    (PENDING, None),
)


def _due(run_id: int, state: str, due_column: Any, now: datetime, limit: int, *columns: Any) -> Any:
    """The first ``limit`` recipients of the run in ``state`` that are due at ``now``."""
    query = select(*columns).where(RECIPIENT.c.run_id == run_id, RECIPIENT.c.state == state)
    if due_column is not None:
        query = query.where(due_column <= now)
    return query.order_by(RECIPIENT.c.position).limit(limit)


def load_due(connection: Connection, run_id: int, now: datetime, limit: int) -> list[Due]:
    """Up to ``limit`` recipients due now, without claiming them (tests make crashes with it)."""
    found: list[Due] = []
    for state, due_column in DUE_ORDER:
        if len(found) >= limit:
            break
        query = _due(run_id, state, due_column, now, limit - len(found), *DUE_COLUMNS)
        found.extend(Due(**row._asdict()) for row in connection.execute(query).all())
    return found


def claim_batch(
    connection: Connection, run_id: int, worker_id: str, now: datetime, limit: int
) -> list[Due]:
    """Claim up to ``limit`` due recipients for ``worker_id``: nobody else will take them.

    Retries first, then released holds, then pending, each in plan order. On
    PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED``: workers
    claiming at the same moment take different rows without waiting for each
    other. Every claim is one guarded UPDATE (``claimed_by IS NULL``), so on
    SQLite too a recipient is never claimed twice.
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
                RECIPIENT.c.id.in_(ids),
                RECIPIENT.c.state == state,
                RECIPIENT.c.claimed_by.is_(None),
            )
            .values(claimed_by=worker_id)
            .returning(*DUE_COLUMNS)
        ).all()
        found.extend(sorted((Due(**row._asdict()) for row in rows), key=lambda d: d.position))
    return found


def claim(
    connection: Connection,
    run_id: int,
    due: Sequence[Due],
    now: datetime,
    worker_id: str | None = None,
    shard: int = 0,
) -> set[int]:
    """Mark recipients `sending` just before they go to a connection; counts an attempt.

    The hot path of delivery: one guarded UPDATE per state and one for the
    counters. Under the run's lease every row is normally still in the state
    it was read in; only when some row was not (rowcount short) are the
    claimed ids read back.
    """
    claimed: set[int] = set()
    by_state: dict[str, list[int]] = {}
    for item in due:
        by_state.setdefault(item.state, []).append(item.id)
    deltas: Counter[str] = Counter()
    for state, ids in by_state.items():
        condition = and_(RECIPIENT.c.id.in_(ids), RECIPIENT.c.state == state)
        if worker_id is not None:  # only what this worker claimed in its batch
            condition = and_(condition, RECIPIENT.c.claimed_by == worker_id)
        result = connection.execute(
            update(RECIPIENT)
            .where(condition)
            .values(state=SENDING, updated_at=now, attempts=RECIPIENT.c.attempts + 1)
        )
        if result.rowcount == len(ids):
            claimed.update(ids)
            moved = len(ids)
        else:  # some were no longer in `state`: find out which we took
            taken = set(
                connection.execute(
                    select(RECIPIENT.c.id).where(
                        RECIPIENT.c.id.in_(ids),
                        RECIPIENT.c.state == SENDING,
                        RECIPIENT.c.updated_at == now,
                    )
                ).scalars()
            )
            claimed.update(taken)
            moved = result.rowcount
        deltas[state] -= moved
        deltas[SENDING] += moved
    bump(connection, run_id, deltas, shard)
    return claimed


def unclaim(
    connection: Connection, run_id: int, ids: Sequence[int], now: datetime, shard: int = 0
) -> None:
    """Recipients claimed but never handed to a connection go back to `pending`."""
    move(
        connection,
        run_id,
        ids,
        SENDING,
        PENDING,
        now,
        shard,
        attempts=RECIPIENT.c.attempts - 1,
        claimed_by=None,
    )


# -- recording results -------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """What became of one claimed recipient."""

    id: int
    state: str  # sent, retrying or failed
    smtp_code: int | None = None
    smtp_reply: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    # For the dedup ledger and suppressions.
    customer_id: str = ""
    address: str | None = None
    document_id: str | None = None
    offset_days: int | None = None
    hard_bounce: bool = False


def record(
    connection: Connection,
    run_id: int,
    definition_id: str,
    results: Sequence[Result],
    now: datetime,
    *,
    ledger: bool = True,
    shard: int = 0,
) -> None:
    """Write a batch of results: states, replies, the ledger, and new suppressions.

    Only recipients still `sending` are written: one whose sender was
    presumed dead (its lease lapsed) has been made `unknown` meanwhile and
    stays so. The rows are locked first, so a reaper cannot move them between
    this check and the write, and the counters move by what was written.
    """
    if not results:
        return
    pick = select(RECIPIENT.c.id).where(
        RECIPIENT.c.id.in_([r.id for r in results]), RECIPIENT.c.state == SENDING
    )
    if connection.dialect.name == "postgresql":
        pick = pick.order_by(RECIPIENT.c.id).with_for_update()
    still = set(connection.execute(pick).scalars())
    results = [r for r in results if r.id in still]
    if not results:
        return
    statement = (
        update(RECIPIENT)
        .where(RECIPIENT.c.id == bindparam("rid"), RECIPIENT.c.state == SENDING)
        .values(
            state=bindparam("new_state"),
            smtp_code=bindparam("code"),
            smtp_reply=bindparam("reply"),
            error=bindparam("err"),
            next_attempt_at=bindparam("next_at"),
            sent_at=bindparam("sent"),
            updated_at=now,
            claimed_by=None,
        )
    )
    connection.execute(
        statement,
        [
            {
                "rid": r.id,
                "new_state": r.state,
                "code": r.smtp_code,
                "reply": r.smtp_reply,
                "err": r.error,
                "next_at": r.next_attempt_at,
                "sent": r.sent_at,
            }
            for r in results
        ],
    )
    deltas: Counter[str] = Counter()
    for r in results:
        deltas[SENDING] -= 1
        deltas[r.state] += 1
    bump(connection, run_id, deltas, shard)

    entries = []
    for r in results:
        if r.state != SENT or not ledger:
            continue
        row = {
            "definition_id": definition_id,
            "customer_id": r.customer_id,
            "address": r.address,
            "address_lower": fold(r.address) if r.address else None,
            "document_id": r.document_id,
            "offset_days": r.offset_days,
            "at": r.sent_at or now,
            "run_id": run_id,
        }
        row["fingerprint"] = history_fingerprint(row)
        entries.append(row)
    if entries:
        connection.execute(insert_ignoring(connection, table_of(History), "fingerprint"), entries)

    bounces = {
        fold(r.address): r.address for r in results if r.hard_bounce and r.address is not None
    }
    if bounces:
        connection.execute(
            insert_ignoring(connection, table_of(Suppression), "address_lower"),
            [
                {
                    "address_lower": lower,
                    "address": address,
                    "reason": "hard_bounce",
                    "since": now.date(),
                }
                for lower, address in sorted(bounces.items())
            ],
        )


def insert_ignoring(connection: Connection, table: Any, keys: str | list[str]) -> Any:
    """INSERT that skips rows whose ``keys`` already exist (both databases)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    elements = [keys] if isinstance(keys, str) else keys
    return dialect.insert(table).on_conflict_do_nothing(index_elements=elements)


# -- the run's own state -------------------------------------------------------------


def set_state(
    connection: Connection,
    run_id: int,
    state: str,
    *,
    ended_at: datetime | None = None,
    error: str | None = None,
    clear_stop: bool = False,
) -> None:
    values: dict[str, Any] = {"state": state, "ended_at": ended_at}
    if error is not None:
        values["error"] = error
    if clear_stop:
        values.update(stop_requested_at=None, stop_requested_by=None, error=error)
    connection.execute(update(RUN).where(RUN.c.id == run_id).values(**values))


def resume(connection: Connection, run_id: int) -> bool:
    """A worker takes up a run: `running` again if it is running or waiting and not stopped."""
    result = connection.execute(
        update(RUN)
        .where(
            RUN.c.id == run_id,
            RUN.c.state.in_([RUNNING, WAITING]),
            RUN.c.stop_requested_at.is_(None),
        )
        .values(state=RUNNING, ended_at=None)
    )
    return result.rowcount == 1


def run_row(connection: Connection, run_id: int) -> Any:
    return connection.execute(select(RUN).where(RUN.c.id == run_id)).one()


def settled_state(counts: dict[str, int]) -> str | None:
    """The state a run ends in when nothing is left to do now, or None if work remains.

    Work remains while anything is pending, sending or retrying; held
    recipients alone make the run `waiting`.
    """
    if counts[PENDING] or counts[SENDING] or counts[RETRYING]:
        return None
    if counts[HELD]:
        return WAITING
    if counts[FAILED] or counts[UNKNOWN]:
        return COMPLETED_WITH_FAILURES
    return COMPLETED


def next_due(connection: Connection, run_id: int) -> datetime | None:
    """When the next retry or held recipient becomes due."""
    retry = connection.execute(
        select(func.min(RECIPIENT.c.next_attempt_at)).where(
            RECIPIENT.c.run_id == run_id, RECIPIENT.c.state == RETRYING
        )
    ).scalar()
    held = connection.execute(
        select(func.min(RECIPIENT.c.send_after)).where(
            RECIPIENT.c.run_id == run_id, RECIPIENT.c.state == HELD
        )
    ).scalar()
    times: list[datetime] = [t for t in (retry, held) if t is not None]
    return min(times) if times else None


__all__ = [
    "Due",
    "Result",
    "acquire_lease",
    "bump",
    "claim",
    "claim_batch",
    "insert_ignoring",
    "load_due",
    "move",
    "record",
    "recover_orphans",
    "release_lease",
    "renew_lease",
    "resend_unknown",
    "set_state",
    "settled_state",
    "unclaim",
]
