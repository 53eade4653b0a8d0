"""The named queries of delivery: every state change of a run or a recipient.

Each recipient transition is guarded by the state it leaves
(``… WHERE id IN (…) AND state = 'pending'``) and moves the run's counters in
the same transaction, so the counts another process reads are always the
rows' own.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from core.addresses import fold
from core.clock import format_instant
from core.delivery.states import (
    COMPLETED,
    COMPLETED_WITH_FAILURES,
    EXCLUDED,
    FAILED,
    HELD,
    LEASE_SECONDS,
    PENDING,
    RECIPIENT_STATES,
    RETRYING,
    RUNNING,
    SENDING,
    SENT,
    UNKNOWN,
    WAITING,
)
from core.interchange.parse import history_fingerprint
from core.planner.quiet_hours import QuietHours, zone
from core.storage.models import (
    Customer,
    Definition,
    History,
    MessageRun,
    Organisation,
    Recipient,
    RunCount,
    SendClaim,
    Suppression,
    table_of,
)

RUN = table_of(MessageRun)
RECIPIENT = table_of(Recipient)
COUNT = table_of(RunCount)
SEND_CLAIM = table_of(SendClaim)


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
    first_attempt_at: datetime | None = None


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


# -- the guards at the moment of sending ---------------------------------------------

# A recipient of another run holding a dedup key in one of these states keeps it:
# it was sent, is being sent, will be tried again, or may have been sent.
KEY_HELD_STATES = (SENT, SENDING, RETRYING, UNKNOWN)
_HOLDING = {
    SENT: "has sent",
    SENDING: "is sending",
    RETRYING: "is sending (retrying)",
    UNKNOWN: "may have sent (unknown)",
}


@dataclass(frozen=True, slots=True)
class Guard:
    """What a run's recipients are checked against when they are marked `sending`."""

    definition_id: str
    dedup: str  # none, per_document or per_trigger
    use_billing_rules: bool
    quiet_hours: QuietHours | None
    organisation_zone: str


def guard_of(connection: Connection, run_id: int) -> Guard:
    """The run's definition's dedup and quiet hours, read once per delivery."""
    definition = table_of(Definition)
    row = connection.execute(
        select(
            definition.c.id,
            definition.c.dedup,
            definition.c.use_billing_rules,
            definition.c.quiet_start,
            definition.c.quiet_end,
        )
        .join(RUN, RUN.c.definition_id == definition.c.id)
        .where(RUN.c.id == run_id)
    ).one()
    organisation_zone = connection.execute(select(table_of(Organisation).c.timezone)).scalar_one()
    quiet = None
    if row.quiet_start is not None and row.quiet_end is not None:
        quiet = QuietHours.parse(row.quiet_start, row.quiet_end)
    return Guard(row.id, row.dedup, bool(row.use_billing_rules), quiet, organisation_zone)


def dedup_key(guard: Guard, item: Due) -> str | None:
    """The key two runs of the definition must never both send (None: no dedup)."""
    if guard.dedup == "per_trigger":
        return json.dumps([item.customer_id])
    if guard.dedup == "per_document":
        offset = item.offset_days if guard.use_billing_rules else None
        return json.dumps([item.document_id, fold(item.address), offset])
    return None


def _quiet_now(
    connection: Connection, guard: Guard, due: Sequence[Due], now: datetime
) -> dict[int, datetime]:
    """Recipients whose quiet hours are in force at ``now``: id → when they end."""
    if guard.quiet_hours is None or not due:
        return {}
    customer = table_of(Customer)
    zones = dict(
        connection.execute(
            select(customer.c.id, customer.c.timezone).where(
                customer.c.id.in_({d.customer_id for d in due})
            )
        ).all()
    )
    held: dict[int, datetime] = {}
    ends: dict[str, datetime | None] = {}
    for item in due:
        name = zones.get(item.customer_id) or guard.organisation_zone
        if name not in ends:
            ends[name] = guard.quiet_hours.send_after(now, zone(name))
        end = ends[name]
        if end is not None:
            held[item.id] = end
    return held


def _history_hits(
    connection: Connection, guard: Guard, run_id: int, due: Sequence[Due]
) -> dict[int, Any]:
    """per_document: recipients the ledger says this definition sent already (by another run)."""
    if guard.dedup != "per_document" or not due:
        return {}
    history = table_of(History)
    documents = {d.document_id for d in due}
    named = [d for d in documents if d is not None]
    condition: ColumnElement[bool] = history.c.document_id.in_(named)
    if None in documents:
        condition = or_(condition, history.c.document_id.is_(None))
    entries = connection.execute(
        select(
            history.c.document_id,
            history.c.address_lower,
            history.c.offset_days,
            history.c.at,
            history.c.run_id,
        )
        .where(
            history.c.definition_id == guard.definition_id,
            condition,
            or_(history.c.run_id.is_(None), history.c.run_id != run_id),
        )
        .order_by(history.c.at.desc())
    ).all()
    if not entries:
        return {}
    hits: dict[int, Any] = {}
    for item in due:
        lower = fold(item.address)
        for entry in entries:
            if entry.document_id != item.document_id:
                continue
            if entry.address_lower is not None and entry.address_lower != lower:
                continue
            if (
                guard.use_billing_rules
                and entry.offset_days is not None
                and entry.offset_days != item.offset_days
            ):
                continue
            hits[item.id] = entry
            break
    return hits


def _what(item: Due) -> str:
    what = f"document {item.document_id}" if item.document_id is not None else "this message"
    return f"{what} to {item.address}"


def _taken_keys(
    connection: Connection, guard: Guard, run_id: int, due: Sequence[Due]
) -> dict[int, tuple[str, str]]:
    """Take the dedup keys of ``due`` for this run; those another run holds: id → reason.

    Every key's row is inserted if missing and then locked (in key order, so
    that two runs never wait on each other in a cycle): a second transaction
    marking the same key waits here until the first commits, then sees what
    became of the first's recipient. That is what makes two runs racing on two
    machines unable to both send one document to one address.
    """
    keys = {item.id: key for item in due if (key := dedup_key(guard, item)) is not None}
    if not keys:
        return {}
    first: dict[str, int] = {}
    for item in due:
        if item.id in keys:
            first.setdefault(keys[item.id], item.id)
    connection.execute(
        insert_ignoring(connection, SEND_CLAIM, ["definition_id", "key"]),
        [
            {
                "definition_id": guard.definition_id,
                "key": key,
                "run_id": run_id,
                "recipient_id": rid,
            }
            for key, rid in sorted(first.items())
        ],
    )
    pick = (
        select(SEND_CLAIM.c.key, SEND_CLAIM.c.run_id, SEND_CLAIM.c.recipient_id)
        .where(SEND_CLAIM.c.definition_id == guard.definition_id, SEND_CLAIM.c.key.in_(list(first)))
        .order_by(SEND_CLAIM.c.key)
    )
    if connection.dialect.name == "postgresql":
        pick = pick.with_for_update()
    holders = {row.key: row for row in connection.execute(pick).all()}
    others = {row.recipient_id for row in holders.values() if row.recipient_id not in keys}
    states = (
        dict(
            connection.execute(
                select(RECIPIENT.c.id, RECIPIENT.c.state).where(RECIPIENT.c.id.in_(others))
            ).all()
        )
        if others
        else {}
    )
    refused: dict[int, tuple[str, str]] = {}
    mine: set[str] = set()
    for item in due:
        key = keys.get(item.id)
        if key is None:
            continue
        holder = holders[key]
        if key in mine or holder.recipient_id == item.id:
            # Taken by this run in this very transaction (per_trigger: a customer's
            # several addresses), or by this recipient on an earlier attempt.
            mine.add(key)
            continue
        state = states.get(holder.recipient_id)
        if state in KEY_HELD_STATES:
            if holder.run_id == run_id:  # another address of this run's customer
                mine.add(key)
                continue
            refused[item.id] = (
                "in_another_run",
                f"run {holder.run_id} {_HOLDING[state]} {_what(item)}",
            )
            continue
        # The holder let go of the key (failed, excluded, back to pending): take it.
        connection.execute(
            update(SEND_CLAIM)
            .where(SEND_CLAIM.c.definition_id == guard.definition_id, SEND_CLAIM.c.key == key)
            .values(run_id=run_id, recipient_id=item.id)
        )
        mine.add(key)
    return refused


def _set_aside(
    connection: Connection,
    run_id: int,
    due: Sequence[Due],
    held: dict[int, datetime],
    refused: dict[int, tuple[str, str]],
    now: datetime,
    worker_id: str | None,
    shard: int,
) -> None:
    """Move what may not be sent now: `held` until quiet hours end, or `excluded`."""
    deltas: Counter[str] = Counter()
    for item in due:
        condition = and_(RECIPIENT.c.id == item.id, RECIPIENT.c.state == item.state)
        if worker_id is not None:
            condition = and_(condition, RECIPIENT.c.claimed_by == worker_id)
        if item.id in refused:
            code, detail = refused[item.id]
            values: dict[str, Any] = {
                "state": EXCLUDED,
                "decision": EXCLUDED,
                "reasons": [{"code": code, "detail": detail}],
                "send_after": None,
                "next_attempt_at": None,
                "claimed_by": None,
                "updated_at": now,
            }
            target = EXCLUDED
        elif item.id in held:
            values = {
                "state": HELD,
                "send_after": held[item.id],
                "claimed_by": None,
                "updated_at": now,
            }
            target = HELD
        else:
            continue
        if connection.execute(update(RECIPIENT).where(condition).values(**values)).rowcount:
            deltas[item.state] -= 1
            deltas[target] += 1
    bump(connection, run_id, deltas, shard)


def claim(
    connection: Connection,
    run_id: int,
    due: Sequence[Due],
    now: datetime,
    worker_id: str | None = None,
    shard: int = 0,
    guard: Guard | None = None,
) -> set[int]:
    """Mark recipients `sending` just before they go to a connection; counts an attempt.

    The hot path of delivery: one guarded UPDATE per state and one for the
    counters. Under the run's lease every row is normally still in the state
    it was read in; only when some row was not (rowcount short) are the
    claimed ids read back.

    In the same transaction, two guards (``guard``, read from the run when
    not given): a recipient whose quiet hours are in force now becomes `held`
    until they end, and, for a ``per_document`` or ``per_trigger`` definition,
    one whose document and address (or customer) another run of the
    definition has sent or is sending becomes `excluded`, ``in_another_run``.
    """
    if not due:
        return set()
    guard = guard or guard_of(connection, run_id)
    held = _quiet_now(connection, guard, due, now)
    sendable = [d for d in due if d.id not in held]
    refused = _taken_keys(connection, guard, run_id, sendable)
    for rid, entry in _history_hits(connection, guard, run_id, sendable).items():
        if rid in refused:
            continue
        item = next(d for d in sendable if d.id == rid)
        when = format_instant(entry.at)
        if entry.run_id is not None:
            refused[rid] = (
                "in_another_run",
                f"run {entry.run_id} has sent {_what(item)} on {when}",
            )
        else:
            refused[rid] = ("already_sent", f"this definition sent {_what(item)} on {when}")
    if held or refused:
        _set_aside(connection, run_id, due, held, refused, now, worker_id, shard)
        due = [d for d in due if d.id not in held and d.id not in refused]
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
    # Kept from the first attempt on (retries end retry_for_seconds after it).
    first_attempt_at: datetime | None = None


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
    ids = [r.id for r in results]
    if connection.dialect.name == "postgresql":
        pick = (
            select(RECIPIENT.c.id)
            .where(RECIPIENT.c.id.in_(ids), RECIPIENT.c.state == SENDING)
            .order_by(RECIPIENT.c.id)
            .with_for_update()
        )
        still = set(connection.execute(pick).scalars())
    else:
        # SQLite: a plain SELECT would run before the transaction takes the write
        # lock (the driver begins it at the first write), so a reaper could make
        # a row `unknown` between it and the UPDATE below, and the counters would
        # move for a row that was not written (the run then never settles). A
        # write that reads the rows takes the lock first.
        still = set(
            connection.execute(
                update(RECIPIENT)
                .where(RECIPIENT.c.id.in_(ids), RECIPIENT.c.state == SENDING)
                .values(updated_at=now)
                .returning(RECIPIENT.c.id)
            ).scalars()
        )
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
            first_attempt_at=func.coalesce(
                RECIPIENT.c.first_attempt_at,
                bindparam("first", type_=RECIPIENT.c.first_attempt_at.type),
            ),
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
                "first": r.first_attempt_at,
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

    Work remains while anything is pending or sending; held or retrying
    recipients alone make the run `waiting` (the caller has seen that none
    is due now).
    """
    if counts[PENDING] or counts[SENDING]:
        return None
    if counts[HELD] or counts[RETRYING]:
        return WAITING
    if counts[FAILED] or counts[UNKNOWN]:
        return COMPLETED_WITH_FAILURES
    return COMPLETED


def next_due(connection: Connection, run_id: int, only: str | None = None) -> datetime | None:
    """When the next retry or held recipient (``only``: of that state) becomes due."""
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
    if only == RETRYING:
        held = None
    elif only == HELD:
        retry = None
    times: list[datetime] = [t for t in (retry, held) if t is not None]
    return min(times) if times else None


__all__ = [
    "Due",
    "Guard",
    "Result",
    "acquire_lease",
    "bump",
    "claim",
    "claim_batch",
    "dedup_key",
    "guard_of",
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


# -- after sending: a report proves a message arrived -------------------------------


def report_proves_sent(
    connection: Connection, recipient_id: int, reported_at: datetime, now: datetime
) -> bool:
    """An `unknown` recipient with a report becomes `sent` (the report proves the
    message reached a server), with its ledger entry; a run that then has nothing
    failed or unknown left, and nothing else to do, becomes `completed`.

    True when the recipient moved. A recipient in any other state keeps it.
    """
    row = connection.execute(
        select(
            RECIPIENT.c.run_id,
            RECIPIENT.c.customer_id,
            RECIPIENT.c.address,
            RECIPIENT.c.document_id,
            RECIPIENT.c.offset_days,
        ).where(RECIPIENT.c.id == recipient_id, RECIPIENT.c.state == UNKNOWN)
    ).first()
    if row is None:
        return False
    if not move(connection, row.run_id, [recipient_id], UNKNOWN, SENT, now, sent_at=reported_at):
        return False
    run = run_row(connection, row.run_id)
    entry = {
        "definition_id": run.definition_id,
        "customer_id": row.customer_id,
        "address": row.address,
        "address_lower": fold(row.address) if row.address else None,
        "document_id": row.document_id,
        "offset_days": row.offset_days,
        "at": reported_at,
        "run_id": row.run_id,
    }
    entry["fingerprint"] = history_fingerprint(entry)
    connection.execute(insert_ignoring(connection, table_of(History), "fingerprint"), [entry])
    if run.state == COMPLETED_WITH_FAILURES:
        counts = dict.fromkeys(RECIPIENT_STATES, 0)
        for state, n in connection.execute(
            select(COUNT.c.state, func.sum(COUNT.c.n))
            .where(COUNT.c.run_id == row.run_id)
            .group_by(COUNT.c.state)
        ):
            counts[state] = int(n)
        if settled_state(counts) == COMPLETED:
            connection.execute(
                update(RUN)
                .where(RUN.c.id == row.run_id, RUN.c.state == COMPLETED_WITH_FAILURES)
                .values(state=COMPLETED)
            )
    return True
