"""Every state change of a recipient or a run, each named and guarded by the state it leaves.

This is the only module that writes a ``state`` column. The moves allowed are
the tables of ``core/states.py`` (``RECIPIENT_TRANSITIONS``, ``RUN_TRANSITIONS``);
a move not listed there is refused with ValueError, and a row no longer in
the state a move leaves is not moved (``… WHERE id IN (…) AND state =
'pending'``). A recipient's move changes the run's counters in the same
transaction, so the counts another process reads are always the rows' own.

Where does a recipient become …
- `sending`: ``mark_sending`` (just before its message goes to a connection),
  or `held`/`excluded` there instead (quiet hours, another run: ``guards.py``);
- `held` from `sending`: ``hold_at_the_wire`` (its quiet hours began before its
  turn on the wire came);
- `pending` again: ``give_back_unsent`` (never handed to a connection),
  ``resend_unknown`` (the operator's choice);
- `sent`, `retrying`, `failed`: ``record_results`` (the server's reply, as
  ``policy.reply_outcome`` reads it);
- `unknown`: ``make_unknown`` (its sending process died: ``registry.reap``), or
  ``record_results`` (its connection was lost after the data, before the reply);
- `sent` after `unknown`: ``report_proves_sent`` (a bounce or complaint report).
Every attempt is kept (``recipient_attempt``): ``record_results`` and
``make_unknown`` write it in the same statement batch as the state it led to.
And a run: ``run_transition`` with a name of ``RUN_TRANSITIONS`` (``restart``,
``resume``, ``settle``, ``request_stop``, ``finish_stopping`` …).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    func,
    literal,
    null,
    select,
    true,
    update,
)

from core.addresses import fold
from core.delivery.guards import Guard, guard_of, set_asides
from core.delivery.policy import settled_state
from core.messages.due import Due
from core.states import (
    COMPLETED,
    COMPLETED_WITH_FAILURES,
    EXCLUDED,
    HELD,
    PENDING,
    RECIPIENT_STATES,
    RECIPIENT_TRANSITIONS,
    RETRYING,
    RUN_TRANSITIONS,
    SENDING,
    SENT,
    SETTLE,
    UNKNOWN,
    WAITING,
    RecipientState,
    RunState,
)
from core.storage.ledger import write_sends
from core.storage.models import (
    MessageRun,
    Recipient,
    RecipientAttempt,
    RunCount,
    Suppression,
    table_of,
)
from core.storage.notices import run_changed
from core.storage.sql import (
    dialect_insert,
    driver_instants,
    insert_ignoring,
    insert_rows,
    padded,
    remembered,
    update_rows,
)

RUN = table_of(MessageRun)
RECIPIENT = table_of(Recipient)
COUNT = table_of(RunCount)
ATTEMPT = table_of(RecipientAttempt)

LOST_ATTEMPT = "no reply known: the process sending it stopped while it was being sent"
ORPHAN_NOTE = (
    "the process delivering this message stopped while it was being sent: it may or "
    "may not have reached the server, so it is not sent again unless asked "
    "(msgrun run restart RUN --resend-unknown)"
)


def check_recipient_move(source: str, target: str) -> str:
    """The name of the move ``source`` → ``target``; ValueError when it is not allowed."""
    name = RECIPIENT_TRANSITIONS.get((RecipientState(source), RecipientState(target)))
    if name is None:
        raise ValueError(f"a recipient may not go from {source} to {target}")
    return name


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
    statement = dialect_insert(connection, COUNT)
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
    source: RecipientState,
    target: RecipientState,
    now: datetime,
    *,
    shard: int = 0,
    **values: Any,
) -> list[int]:
    """The one recipient transition: ``source`` → ``target`` for ``ids`` (all when None).

    Only the moves of ``states.RECIPIENT_TRANSITIONS`` are made (ValueError for
    any other); each row moves only if it is still in ``source``. Returns the
    ids moved; the run's counters move by as many in the same transaction.
    """
    check_recipient_move(source, target)
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
        deltas: Counter[str] = Counter({source: -len(moved)})
        deltas[target] += len(moved)  # nothing when it stays where it was (held → held)
        bump(connection, run_id, deltas, shard)
    return moved


def resend_unknown(connection: Connection, run_id: int, now: datetime) -> int:
    """The operator's explicit choice: send the `unknown` recipients again.

    Not those handed on to a follow-up run: that run sends them, or has.
    """
    ids = (
        connection.execute(
            select(RECIPIENT.c.id).where(
                RECIPIENT.c.run_id == run_id,
                RECIPIENT.c.state == UNKNOWN,
                RECIPIENT.c.handed_on_to.is_(None),
            )
        )
        .scalars()
        .all()
    )
    moved = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        moved += len(move(connection, run_id, chunk, UNKNOWN, PENDING, now, error=None))
    return moved


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
        check_recipient_move(item.state, target)
        if connection.execute(update(RECIPIENT).where(condition).values(**values)).rowcount:
            deltas[item.state] -= 1
            deltas[target] += 1
    bump(connection, run_id, deltas, shard)


def mark_sending(
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
    marked ids read back.

    In the same transaction, two guards (``guard``, read from the run when
    not given): a recipient whose quiet hours are in force now becomes `held`
    until they end, and, for a ``per_document`` or ``per_trigger`` definition,
    one whose document and address (or customer) another run of the
    definition has sent or is sending becomes `excluded`, ``in_another_run``.
    """
    if not due:
        return set()
    guard = guard or guard_of(connection, run_id)
    held, refused = set_asides(connection, guard, run_id, due, now)
    if held or refused:
        _set_aside(connection, run_id, due, held, refused, now, worker_id, shard)
        due = [d for d in due if d.id not in held and d.id not in refused]
    marked: set[int] = set()
    by_state: dict[str, list[int]] = {}
    for item in due:
        by_state.setdefault(item.state, []).append(item.id)
    deltas: Counter[str] = Counter()
    for state, ids in by_state.items():
        check_recipient_move(state, SENDING)
        condition = and_(RECIPIENT.c.id.in_(padded(ids)), RECIPIENT.c.state == state)
        if worker_id is not None:  # only what this worker reserved in its batch
            condition = and_(condition, RECIPIENT.c.claimed_by == worker_id)
        result = connection.execute(
            update(RECIPIENT)
            .where(condition)
            .values(state=SENDING, updated_at=now, attempts=RECIPIENT.c.attempts + 1)
        )
        if result.rowcount == len(ids):
            marked.update(ids)
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
            marked.update(taken)
            moved = result.rowcount
        deltas[state] -= moved
        deltas[SENDING] += moved
    bump(connection, run_id, deltas, shard)
    return marked


def give_back_unsent(
    connection: Connection, run_id: int, ids: Sequence[int], now: datetime, shard: int = 0
) -> None:
    """Recipients marked `sending` but never handed to a connection go back to `pending`."""
    move(
        connection,
        run_id,
        ids,
        SENDING,
        PENDING,
        now,
        shard=shard,
        attempts=RECIPIENT.c.attempts - 1,
        claimed_by=None,
    )


def hold_at_the_wire(
    connection: Connection,
    run_id: int,
    held: Sequence[tuple[int, datetime]],
    now: datetime,
    shard: int = 0,
) -> None:
    """Recipients handed to a connection whose quiet hours began before their turn on the
    wire came go back to `held` until they end: not sent, so not an attempt."""
    by_until: dict[datetime, list[int]] = {}
    for rid, until in held:
        by_until.setdefault(until, []).append(rid)
    for until, ids in sorted(by_until.items()):
        move(
            connection,
            run_id,
            sorted(ids),
            SENDING,
            HELD,
            now,
            shard=shard,
            attempts=RECIPIENT.c.attempts - 1,
            claimed_by=None,
            send_after=until,
        )


# -- recording results -------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """What became of one recipient marked `sending`."""

    id: int
    state: str  # sent, retrying or failed; unknown when lost after the data
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
    # Why it failed, as reasons (a file missing at sending: attachments.md), and what
    # its message carried (None: the run attaches nothing; not written).
    reasons: list[dict[str, str]] | None = None
    attachments: list[dict[str, Any]] | None = None
    # This attempt: when it was made (else when it is recorded), and, without a
    # reply, the connection's fault or why the message could not be built.
    attempted_at: datetime | None = None
    fault: str | None = None


# What recording a result writes: a column and its value's expression.
RESULT_ASSIGNMENTS = (
    ("state", "{}"),
    ("smtp_code", "{}"),
    ("smtp_reply", "{}"),
    ("error", "{}"),
    ("next_attempt_at", "{}"),
    ("sent_at", "{}"),
    ("first_attempt_at", "COALESCE(first_attempt_at, {})"),
    ("updated_at", "{}"),
    ("claimed_by", "NULL"),
)
# What recording a result keeps of its attempt (``recipient_attempt``).
ATTEMPT_COLUMNS = ("recipient_id", "at", "smtp_code", "reply", "settled")
ATTEMPT_TYPES = ("integer", "timestamp", "integer", "text", "boolean")
CLOSING_REPLY = re.compile(r"(421) (.*)", re.DOTALL)


def attempt_row(result: Result, stamp: Any, at: Any) -> tuple[Any, ...]:
    """The attempt a result records: its instant, the reply (or the fault), and whether
    it settled the recipient (anything but a retry does).

    A ``421`` closes the connection, so it comes as a fault (``421 4.7.0 …``): the
    attempt keeps it as the reply it is, code and words."""
    code, reply = result.smtp_code, result.smtp_reply
    if code is None:
        reply = result.fault or result.error
        said = CLOSING_REPLY.match(reply or "")
        if said is not None:
            code, reply = int(said[1]), said[2]
    when = stamp if result.attempted_at is None else at(result.attempted_at)
    return (result.id, when, code, reply, result.state != RETRYING)


def record_results(
    connection: Connection,
    run_id: int,
    definition_id: str,
    results: Sequence[Result],
    now: datetime,
    *,
    ledger: bool = True,
    shard: int = 0,
) -> None:
    """Write a batch of results: states, replies, attempts, the ledger, and new suppressions.

    Only recipients still `sending` are written (the UPDATE is guarded by it,
    row by row): one whose sender was presumed dead (its lease lapsed) has been
    made `unknown` meanwhile and stays so. When fewer rows were written than
    results given, those written are read back, so that the counters, the
    ledger and the suppressions follow exactly what was written.

    The hot path of recording: the UPDATE runs through the driver for the
    whole batch (``storage.sql.update_rows``), in id order (as a reaper locks them).
    """
    if not results:
        return
    for state in {r.state for r in results}:
        check_recipient_move(SENDING, state)
    results = sorted(results, key=attrgetter("id"))
    at = remembered(driver_instants(connection))
    stamp = at(now)
    written = update_rows(
        connection,
        "recipient",
        RESULT_ASSIGNMENTS,
        "id",
        [
            (
                r.state,
                r.smtp_code,
                r.smtp_reply,
                r.error,
                at(r.next_attempt_at),
                at(r.sent_at),
                at(r.first_attempt_at),
                stamp,
                r.id,
            )
            for r in results
        ],
        condition=f"state = '{SENDING}'",
    )
    if written != len(results):  # some had been made `unknown`: which did we write?
        ids = [r.id for r in results]
        moved = set(
            connection.execute(
                select(RECIPIENT.c.id).where(
                    RECIPIENT.c.id.in_(ids),
                    RECIPIENT.c.updated_at == now,
                    RECIPIENT.c.state.in_({r.state for r in results}),
                )
            ).scalars()
        )
        results = [r for r in results if r.id in moved]
    if not results:
        return
    insert_rows(
        connection,
        "recipient_attempt",
        ATTEMPT_COLUMNS,
        [attempt_row(r, stamp, at) for r in results],
        types=ATTEMPT_TYPES,
    )
    deltas = Counter(r.state for r in results)
    deltas[SENDING] -= len(results)
    bump(connection, run_id, deltas, shard)
    record_evidence(connection, results)

    if ledger:
        write_sends(
            connection,
            definition_id,
            run_id,
            (
                (r.id, r.customer_id, r.address, r.document_id, r.offset_days, r.sent_at or now)
                for r in results
                if r.state == SENT
            ),
            at,
        )

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


def record_evidence(connection: Connection, results: Sequence[Result]) -> None:
    """What each message carried, and the reason a message was not built (attachments.md):
    written only for runs that attach files, so the others' recording is as before."""
    carried = [
        {"rid": r.id, "attachments": r.attachments} for r in results if r.attachments is not None
    ]
    if carried:
        connection.execute(
            update(RECIPIENT)
            .where(RECIPIENT.c.id == bindparam("rid"))
            .values(attachments=bindparam("attachments")),
            carried,
        )
    reasons = [{"rid": r.id, "reasons": r.reasons} for r in results if r.reasons]
    if reasons:
        connection.execute(
            update(RECIPIENT)
            .where(RECIPIENT.c.id == bindparam("rid"))
            .values(reasons=bindparam("reasons")),
            reasons,
        )


def make_unknown(
    connection: Connection, worker_id: str | None, now: datetime, run_id: int | None = None
) -> dict[int, int]:
    """``sending`` recipients of a dead process become ``unknown``, counters moved with them.

    They may or may not have reached the server, so they are never sent again
    without the operator's say. ``worker_id`` None: the recipients of
    ``run_id`` sending that no process has reserved; ``run_id`` None: those of every
    run. Returns run id → recipients made unknown.
    """
    check_recipient_move(SENDING, UNKNOWN)
    reserved_by: ColumnElement[bool]
    if worker_id is None:
        assert run_id is not None
        reserved_by = RECIPIENT.c.claimed_by.is_(None)
    else:
        reserved_by = RECIPIENT.c.claimed_by == worker_id
    if run_id is not None:
        reserved_by = and_(reserved_by, RECIPIENT.c.run_id == run_id)
    # Its attempt, at the instant it was marked `sending`: no reply is known.
    connection.execute(
        ATTEMPT.insert().from_select(
            ["recipient_id", "at", "smtp_code", "reply", "settled"],
            select(
                RECIPIENT.c.id,
                RECIPIENT.c.updated_at,
                null(),
                literal(LOST_ATTEMPT),
                true(),
            ).where(reserved_by, RECIPIENT.c.state == SENDING, RECIPIENT.c.updated_at.is_not(None)),
        )
    )
    moved = connection.execute(
        update(RECIPIENT)
        .where(reserved_by, RECIPIENT.c.state == SENDING)
        .values(state=UNKNOWN, error=ORPHAN_NOTE, updated_at=now, claimed_by=None)
        .returning(RECIPIENT.c.run_id)
    ).scalars()
    per_run = Counter(moved)
    for run, n in per_run.items():
        bump(connection, run, {SENDING: -n, UNKNOWN: n})
    return dict(per_run)


# -- the run's own state -------------------------------------------------------------


def run_transition(connection: Connection, run_id: int, name: str, **values: Any) -> bool:
    """Move the run along the transition ``name`` of ``RUN_TRANSITIONS``, if it is in a
    state that transition leaves; True when it moved. ``values``: other columns."""
    if name not in RUN_TRANSITIONS:
        raise ValueError(f"no run transition is called {name!r}")
    sources, target = RUN_TRANSITIONS[name]
    result = connection.execute(
        update(RUN)
        .where(RUN.c.id == run_id, RUN.c.state.in_(sorted(sources)))
        .values(state=target, **values)
    )
    if result.rowcount == 1:
        run_changed(connection, run_id)  # consoles elsewhere show it at once
    return result.rowcount == 1


def restart(connection: Connection, run_id: int) -> bool:
    """`run start`/`run restart`: deliver it again; the stop request and error are cleared."""
    return run_transition(
        connection,
        run_id,
        "restart",
        ended_at=None,
        error=None,
        stop_requested_at=None,
        stop_requested_by=None,
    )


def resume(connection: Connection, run_id: int) -> bool:
    """A worker takes up a run: `running` again if it is running or waiting and not stopped
    (what interrupted an earlier delivery is cleared: ``note_interruption``)."""
    sources, target = RUN_TRANSITIONS["resume"]
    result = connection.execute(
        update(RUN)
        .where(
            RUN.c.id == run_id,
            RUN.c.state.in_(sorted(sources)),
            RUN.c.stop_requested_at.is_(None),
        )
        .values(state=target, ended_at=None, error=None)
    )
    if result.rowcount == 1:
        run_changed(connection, run_id)
    return result.rowcount == 1


def note_interruption(connection: Connection, run_id: int, error: str) -> bool:
    """A delivery ended on an error and left the run unfinished (`running` or
    `stopping`): the run keeps why, for whoever looks at it, until it is taken up again
    (``restart`` and ``resume`` clear it)."""
    result = connection.execute(
        update(RUN)
        .where(RUN.c.id == run_id, RUN.c.state.in_([RunState.RUNNING, RunState.STOPPING]))
        .values(error=error)
    )
    if result.rowcount == 1:
        run_changed(connection, run_id)
    return result.rowcount == 1


def settle(
    connection: Connection, run_id: int, state: str, now: datetime, error: str | None = None
) -> bool:
    """The delivering process ends the run in ``state`` (completed, completed with
    failures, waiting, failed or stopped): ``SETTLE`` names the transition."""
    values: dict[str, Any] = {"ended_at": None if state == WAITING else now}
    if error is not None:
        values["error"] = error
    return run_transition(connection, run_id, SETTLE[RunState(state)], **values)


def request_stop(
    connection: Connection, run_id: int, now: datetime, by: str, *, delivered: bool
) -> bool:
    """Ask the run to stop. ``delivered``: a live process delivers it and will honour the
    request (`stopping`); otherwise stopping it is only a state change (`stopped`)."""
    values: dict[str, Any] = {"stop_requested_at": now, "stop_requested_by": by}
    if delivered:
        return run_transition(connection, run_id, "request_stop", **values)
    return run_transition(connection, run_id, "stop_undelivered", ended_at=now, **values)


def finish_stopping(connection: Connection, run_id: int, now: datetime) -> bool:
    """Nobody delivers the stopping run any more: `stopped`."""
    return run_transition(connection, run_id, "finish_stopping", ended_at=now)


def complete_empty(connection: Connection, run_id: int, now: datetime) -> bool:
    """A run (or a follow-up) whose every candidate is excluded ends `completed` as it
    is made: there is nothing to deliver, so no connection is ever opened for it."""
    return run_transition(connection, run_id, "complete_empty", ended_at=now)


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
    run = connection.execute(
        select(RUN.c.definition_id, RUN.c.state).where(RUN.c.id == row.run_id)
    ).one()
    write_sends(
        connection,
        run.definition_id,
        row.run_id,
        [
            (
                recipient_id,
                row.customer_id,
                row.address,
                row.document_id,
                row.offset_days,
                reported_at,
            )
        ],
        driver_instants(connection),
    )
    if run.state == COMPLETED_WITH_FAILURES:
        counts = dict.fromkeys(RECIPIENT_STATES, 0)
        for state, n in connection.execute(
            select(COUNT.c.state, func.sum(COUNT.c.n))
            .where(COUNT.c.run_id == row.run_id)
            .group_by(COUNT.c.state)
        ):
            counts[state] = int(n)
        if settled_state(counts) == COMPLETED:
            run_transition(connection, row.run_id, "complete_by_report")
    return True
