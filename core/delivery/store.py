"""The named queries of delivery: every state change of a run or a recipient.

Each recipient transition is guarded by the state it leaves
(``… WHERE id IN (…) AND state = 'pending'``) and moves the run's counters in
the same transaction, so the counts another process reads are always the
rows' own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
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


def bump(connection: Connection, run_id: int, deltas: Counter[str] | dict[str, int]) -> None:
    """Move the run's counters by ``deltas`` (state → change), in one statement."""
    moves = {state: delta for state, delta in deltas.items() if delta}
    if not moves:
        return
    change = case(*((COUNT.c.state == state, delta) for state, delta in moves.items()), else_=0)
    connection.execute(
        update(COUNT)
        .where(COUNT.c.run_id == run_id, COUNT.c.state.in_(list(moves)))
        .values(n=COUNT.c.n + change)
    )


def move(
    connection: Connection,
    run_id: int,
    ids: Sequence[int] | None,
    source: str,
    target: str,
    now: datetime,
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
        bump(connection, run_id, {source: -len(moved), target: len(moved)})
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

ORPHAN_NOTE = (
    "the process delivering this message stopped while it was being sent: it may or "
    "may not have reached the server, so it is not sent again unless asked "
    "(msgrun run restart RUN --resend-unknown)"
)


def recover_orphans(connection: Connection, run_id: int, now: datetime) -> int:
    """Recipients left `sending` by a process that is gone become `unknown`.

    Call only with the run's lease held (or when no live lease exists).
    """
    return len(move(connection, run_id, None, SENDING, UNKNOWN, now, error=ORPHAN_NOTE))


def resend_unknown(connection: Connection, run_id: int, now: datetime) -> int:
    """The operator's explicit choice: send the `unknown` recipients again."""
    return len(move(connection, run_id, None, UNKNOWN, PENDING, now, error=None))


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


def load_due(
    connection: Connection, run_id: int, now: datetime, limit: int, skip: Iterable[int] = ()
) -> list[Due]:
    """Up to ``limit`` recipients due now: retries first, then released holds, then pending."""
    skip_ids = list(skip)
    columns = (
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
    found: list[Due] = []
    for state, due_column in (
        (RETRYING, RECIPIENT.c.next_attempt_at),
        (HELD, RECIPIENT.c.send_after),
        (PENDING, None),
    ):
        if len(found) >= limit:
            break
        query = select(*columns).where(RECIPIENT.c.run_id == run_id, RECIPIENT.c.state == state)
        if due_column is not None:
            query = query.where(due_column <= now)
        if skip_ids:
            query = query.where(RECIPIENT.c.id.notin_(skip_ids))
        query = query.order_by(RECIPIENT.c.position).limit(limit - len(found))
        found.extend(Due(**row._asdict()) for row in connection.execute(query).all())
    return found


def claim(connection: Connection, run_id: int, due: Sequence[Due], now: datetime) -> set[int]:
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
    bump(connection, run_id, deltas)
    return claimed


def unclaim(connection: Connection, run_id: int, ids: Sequence[int], now: datetime) -> None:
    """Recipients claimed but never handed to a connection go back to `pending`."""
    move(connection, run_id, ids, SENDING, PENDING, now, attempts=RECIPIENT.c.attempts - 1)


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
) -> None:
    """Write a batch of results: states, replies, the ledger, and new suppressions."""
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
    bump(connection, run_id, deltas)

    ledger = []
    for r in results:
        if r.state != SENT:
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
        ledger.append(row)
    if ledger:
        connection.execute(_insert_ignoring(connection, table_of(History), "fingerprint"), ledger)

    bounces = {
        fold(r.address): r.address for r in results if r.hard_bounce and r.address is not None
    }
    if bounces:
        connection.execute(
            _insert_ignoring(connection, table_of(Suppression), "address_lower"),
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


def _insert_ignoring(connection: Connection, table: Any, key: str) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=[key])


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
