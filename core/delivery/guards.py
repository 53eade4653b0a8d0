"""The checks at the moment of sending, in the transaction that marks recipients `sending`.

An address suppressed since the run was planned (a hard bounce read back, a
complaint, a manual entry) excludes its recipient (``suppressed``, the
suppression's reason in the detail), and so does an unsubscribe recorded since
that turned off the preference the run's kind needs (``contact_preference_off``
or ``address_preference_off``, the planner's detail: ``ADDRESS_CHECKS``); quiet hours in
force now hold a recipient; for ``per_document`` and
``per_trigger`` definitions, a document and address (or a customer) another
run has sent, or is sending, excludes it (``in_another_run``), and the ledger
of this definition too (``already_sent``). ``set_asides`` says which; the
transition that moves them is ``transitions.mark_sending``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    or_,
    select,
    update,
)

from core.addresses import fold
from core.clock import format_instant
from core.messages.due import Due
from core.planner.facts import SuppressionFacts
from core.quiet_hours import QuietHours, zone
from core.states import (
    KEEPS_ITS_KEY,
    RETRYING,
    SENDING,
    SENT,
    UNKNOWN,
    RecipientState,
)
from core.storage.models import (
    Customer,
    DedupKeyHolder,
    Definition,
    History,
    MessageRun,
    Organisation,
    Recipient,
    RunCount,
    Suppression,
    Unsubscribe,
    table_of,
)
from core.storage.sql import insert_ignoring, padded
from core.unsubscribe import records

RUN = table_of(MessageRun)
RECIPIENT = table_of(Recipient)
COUNT = table_of(RunCount)
KEY_HOLDER = table_of(DedupKeyHolder)
SUPPRESSION = table_of(Suppression)
UNSUBSCRIBE = table_of(Unsubscribe)


# -- the guards at the moment of sending ---------------------------------------------

# A recipient of another run in states.KEEPS_ITS_KEY keeps its dedup key; in words:
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
    # The run this one follows up: its hold on the recipients handed on to this run,
    # and its own ledger entries, do not count (after-sending.md, Follow-up).
    follow_up_of: int | None = None
    # The definition's kind: which preference an unsubscribe turns off for it.
    kind: str = ""


def guard_of(connection: Connection, run_id: int) -> Guard:
    """The run's definition's dedup and quiet hours, read once per delivery."""
    definition = table_of(Definition)
    row = connection.execute(
        select(
            definition.c.id,
            definition.c.kind,
            definition.c.dedup,
            definition.c.use_billing_rules,
            definition.c.quiet_start,
            definition.c.quiet_end,
            RUN.c.follow_up_of,
        )
        .join(RUN, RUN.c.definition_id == definition.c.id)
        .where(RUN.c.id == run_id)
    ).one()
    organisation_zone = connection.execute(select(table_of(Organisation).c.timezone)).scalar_one()
    quiet = None
    if row.quiet_start is not None and row.quiet_end is not None:
        quiet = QuietHours.parse(row.quiet_start, row.quiet_end)
    return Guard(
        row.id,
        row.dedup,
        bool(row.use_billing_rules),
        quiet,
        organisation_zone,
        row.follow_up_of,
        row.kind,
    )


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
            or_(history.c.run_id.is_(None), history.c.run_id.notin_(_own_runs(guard, run_id))),
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


def _own_runs(guard: Guard, run_id: int) -> list[int]:
    """Runs whose ledger entries never stop this one: itself, and the run it follows up."""
    return [run_id] if guard.follow_up_of is None else [run_id, guard.follow_up_of]


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
        insert_ignoring(connection, KEY_HOLDER, ["definition_id", "key"]),
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
        select(KEY_HOLDER.c.key, KEY_HOLDER.c.run_id, KEY_HOLDER.c.recipient_id)
        .where(KEY_HOLDER.c.definition_id == guard.definition_id, KEY_HOLDER.c.key.in_(list(first)))
        .order_by(KEY_HOLDER.c.key)
    )
    if connection.dialect.name == "postgresql":
        pick = pick.with_for_update()
    holders = {row.key: row for row in connection.execute(pick).all()}
    others = {row.recipient_id for row in holders.values() if row.recipient_id not in keys}
    states: dict[int, str] = {}
    handed_here: set[int] = set()
    if others:
        for row in connection.execute(
            select(RECIPIENT.c.id, RECIPIENT.c.state, RECIPIENT.c.handed_on_to).where(
                RECIPIENT.c.id.in_(others)
            )
        ):
            states[row.id] = row.state
            if row.handed_on_to == run_id:
                handed_here.add(row.id)
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
        if state in KEEPS_ITS_KEY and holder.recipient_id not in handed_here:
            if holder.run_id == run_id:  # another address of this run's customer
                mine.add(key)
                continue
            refused[item.id] = (
                "in_another_run",
                f"run {holder.run_id} {_HOLDING[RecipientState(state)]} {_what(item)}",
            )
            continue
        # The holder let go of the key (failed, excluded, back to pending): take it.
        connection.execute(
            update(KEY_HOLDER)
            .where(KEY_HOLDER.c.definition_id == guard.definition_id, KEY_HOLDER.c.key == key)
            .values(run_id=run_id, recipient_id=item.id)
        )
        mine.add(key)
    return refused


def _suppressed_now(
    connection: Connection, guard: Guard, due: Sequence[Due]
) -> dict[int, tuple[str, str]]:
    """Recipients whose address is on the suppression list now (it was not when the run
    was planned, or the plan would have excluded it): id → (``suppressed``, detail)."""
    if not due:
        return {}
    lowers = {fold(d.address) for d in due}
    entries = {
        row.address_lower: SuppressionFacts(
            address=row.address,
            reason=row.reason,
            since=row.since,
            report_id=row.report_id,
            run_id=row.run_id,
            detail=row.detail,
        )
        for row in connection.execute(
            select(SUPPRESSION).where(SUPPRESSION.c.address_lower.in_(padded(sorted(lowers))))
        )
    }
    if not entries:
        return {}
    refused: dict[int, tuple[str, str]] = {}
    for item in due:
        entry = entries.get(fold(item.address))
        if entry is None:
            continue
        listed = "" if entry.address == item.address else f" (listed as {entry.address})"
        refused[item.id] = (
            "suppressed",
            f"{item.address} is on the suppression list{listed}: {entry.describe()} "
            "(suppressed after the run was planned; not sent)",
        )
    return refused


def _unsubscribed_now(
    connection: Connection, guard: Guard, due: Sequence[Due]
) -> dict[int, tuple[str, str]]:
    """Recipients whose preference for the run's kind an unsubscribe msgrun recorded has
    turned off (inbox.md): a contact's (any of its addresses) or an address's (that
    address of that contact): id → (``contact_preference_off`` or
    ``address_preference_off``, the planner's detail for it).

    Every record counts, whenever it was made: one made before the run was planned
    has excluded its recipient in the plan already (rules 7 and 8), so a recipient
    still due here was planned before its record. No instant is compared: the run's
    ``planned_at`` is the instant the plan is *for* (a scheduled run's ``--at``, after
    the unsubscribes recorded while it waits), and the clock of the process that
    recorded it may not agree with this one's."""
    if guard.kind not in records.PREFERENCE_OF or not due:
        return {}
    whose, preference = records.PREFERENCE_OF[guard.kind]
    contacts = {d.contact_id for d in due if d.contact_id is not None}
    if not contacts:
        return {}
    query = select(
        UNSUBSCRIBE.c.contact_id,
        UNSUBSCRIBE.c.address_lower,
        UNSUBSCRIBE.c.at,
        UNSUBSCRIBE.c.how,
        UNSUBSCRIBE.c.run_id,
    ).where(
        UNSUBSCRIBE.c.preference == preference,
        UNSUBSCRIBE.c.contact_id.in_(padded(sorted(contacts))),
    )
    if whose == "address":
        lowers = sorted({fold(d.address) for d in due if d.contact_id is not None})
        query = query.where(UNSUBSCRIBE.c.address_lower.in_(padded(lowers)))
    found: dict[tuple[str, str], str] = {}
    for row in connection.execute(query.order_by(UNSUBSCRIBE.c.at, UNSUBSCRIBE.c.id)):
        key = (row.contact_id, row.address_lower if whose == "address" else "")
        # The first record names it, as in the plan (core/planner/load.py).
        found.setdefault(key, records.detail(preference, row.at, row.how, row.run_id))
    if not found:
        return {}
    code = f"{whose}_preference_off"
    refused: dict[int, tuple[str, str]] = {}
    for item in due:
        if item.contact_id is None:
            continue
        said = found.get((item.contact_id, fold(item.address) if whose == "address" else ""))
        if said is not None:
            refused[item.id] = (code, said)
    return refused


# What excludes a recipient by its address at the moment of sending, in this order (the
# first that refuses it names the reason): each returns id → (reason code, detail) for
# the recipients it refuses: suppressed since planning, then unsubscribed since (inbox.md).
AddressCheck = Callable[[Connection, Guard, Sequence[Due]], dict[int, tuple[str, str]]]
ADDRESS_CHECKS: tuple[AddressCheck, ...] = (_suppressed_now, _unsubscribed_now)


def _refused_by_address(
    connection: Connection, guard: Guard, due: Sequence[Due]
) -> dict[int, tuple[str, str]]:
    refused: dict[int, tuple[str, str]] = {}
    for check in ADDRESS_CHECKS:
        remaining = [d for d in due if d.id not in refused] if refused else due
        refused.update(check(connection, guard, remaining))
    return refused


def set_asides(
    connection: Connection, guard: Guard, run_id: int, due: Sequence[Due], now: datetime
) -> tuple[dict[int, datetime], dict[int, tuple[str, str]]]:
    """What of ``due`` may not be sent now: held (id → when its quiet hours end), and
    refused (id → (reason code, detail)). Takes the dedup keys of the rest for this run.

    An address refused (``ADDRESS_CHECKS``: suppressed or unsubscribed since planning)
    is excluded
    whatever else holds; of the rest, quiet hours hold, then other runs exclude."""
    refused = _refused_by_address(connection, guard, due)
    if refused:
        due = [d for d in due if d.id not in refused]
    held = _quiet_now(connection, guard, due, now)
    sendable = [d for d in due if d.id not in held]
    refused.update(_taken_keys(connection, guard, run_id, sendable))
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
    return held, refused
