"""``msgrun run follow-up``: send again to exactly those a run did not reach.

The contract is ``after-sending.md`` (Follow-up). In short: choose settled
recipients of the followed run (by default ``failed`` ones and those with a
bounce), plan each again now with every rule — the billing-rule timing judged
at the followed run's planning instant, and neither the followed run's own
ledger entries for them nor its own hold counting against them — snapshot
that as a new run that records ``follow_up_of``, and mark the chosen
recipients in the followed run as handed on, so nothing sends them twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, func, select, update

from core.bounces import outcomes
from core.clock import Clock, format_instant
from core.delivery.starting import snapshot_plan
from core.planner.facts import HistoryFacts
from core.planner.load import load_definition, load_organisation
from core.planner.plan import Candidate, Replan, plan_definition
from core.planner.reasons import Reason
from core.run_info import read_run
from core.states import (
    BEING_DELIVERED,
    FAILED,
    HOLDS_ITS_MESSAGE,
    SENT,
    SETTLED,
    UNKNOWN,
)
from core.storage.database import Database
from core.storage.models import MessageRun, Recipient, table_of
from core.views.export_rows import Selection

# A follow-up takes settled recipients (states.SETTLED): what is pending, held or
# retrying is `run restart`'s.
DEFAULT = Selection(states=(FAILED,), outcomes=("bounce",))


class FollowUpRefused(Exception):
    """The followed run is still being delivered (exit 1)."""


class NothingChosen(ValueError):
    """No recipient of the run matches the filter (exit 2: nothing created)."""


class NotSettled(ValueError):
    """A filter names a state that is not settled (exit 2)."""


@dataclass(frozen=True)
class Chosen:
    id: int
    customer: str
    address: str | None
    document: str | None
    handed_on_to: int | None = None  # the follow-up it was handed on to, if one


def check_selection(chosen: Selection) -> Selection:
    """The filter as given, or the default; only settled states may be named."""
    if chosen.everyone:
        return DEFAULT
    wrong = [s for s in chosen.states if s not in SETTLED]
    if wrong:
        raise NotSettled(
            f"state {', '.join(wrong)} is not settled: a follow-up takes "
            f"{', '.join(SETTLED)} (what is pending, held or retrying is run restart's)"
        )
    return chosen


def choose(connection: Connection, run_id: int, chosen: Selection) -> list[Chosen]:
    """The recipients of the run that the filter names, among the settled ones."""
    recipient = table_of(Recipient)
    rows = connection.execute(
        select(
            recipient.c.id,
            recipient.c.customer_id,
            recipient.c.address,
            recipient.c.document_id,
            recipient.c.state,
            recipient.c.handed_on_to,
        )
        .where(recipient.c.run_id == run_id, recipient.c.state.in_(SETTLED))
        .order_by(recipient.c.position)
    ).all()
    found = outcomes.of_recipients(connection, [r.id for r in rows]) if chosen.outcomes else {}
    taken = []
    for r in rows:
        seen = found.get(r.id)
        name = seen.name if seen is not None else None
        by_outcome = name is not None and (
            name in chosen.outcomes or ("bounce" in chosen.outcomes and name.startswith("bounce_"))
        )
        # `unknown` only when named, as with --resend-unknown.
        by_state = r.state in chosen.states
        if r.state == UNKNOWN and UNKNOWN not in chosen.states:
            by_outcome = False
        if by_state or by_outcome:
            taken.append(Chosen(r.id, r.customer_id, r.address, r.document_id, r.handed_on_to))
    return taken


def _lower(address: str | None) -> str | None:
    return address.lower() if address is not None else None


def family(connection: Connection, run_id: int) -> set[int]:
    """The run, the run it follows up and so on to the first, and every follow-up of
    any of them: follow-ups of follow-ups never send one message twice either."""
    run = table_of(MessageRun)
    root = run_id
    while (
        above := connection.execute(select(run.c.follow_up_of).where(run.c.id == root)).scalar()
    ) is not None:
        root = above
    found, frontier = {root}, {root}
    while frontier:
        frontier = (
            set(
                connection.execute(
                    select(run.c.id).where(run.c.follow_up_of.in_(frontier))
                ).scalars()
            )
            - found
        )
        found |= frontier
    return found


def _earlier_follow_ups(
    connection: Connection, others: set[int], customers: Sequence[str]
) -> dict[tuple[str, str | None, str | None], tuple[int, str, datetime | None]]:
    """(customer, document, address) → (run, state, sent_at) in ``others``, the other
    runs of the run's follow-up family (``family``): what an earlier follow-up sent or
    holds."""
    recipient, run = table_of(Recipient), table_of(MessageRun)
    rows = connection.execute(
        select(
            recipient.c.run_id,
            recipient.c.customer_id,
            recipient.c.document_id,
            func.lower(recipient.c.address).label("address_lower"),
            recipient.c.state,
            recipient.c.sent_at,
        )
        .select_from(recipient.join(run, run.c.id == recipient.c.run_id))
        .where(
            run.c.id.in_(others),
            recipient.c.customer_id.in_(list(customers)),
            recipient.c.state.in_((SENT, *HOLDS_ITS_MESSAGE)),
        )
        .order_by(recipient.c.run_id)
    ).all()
    found: dict[tuple[str, str | None, str | None], tuple[int, str, datetime | None]] = {}
    for r in rows:
        key = (r.customer_id, r.document_id, r.address_lower)
        if key not in found or r.state == SENT:
            found[key] = (r.run_id, r.state, r.sent_at)
    return found


def _never_twice(
    candidate: Candidate,
    earlier: dict[tuple[str, str | None, str | None], tuple[int, str, datetime | None]],
) -> Candidate:
    """Whatever the dedup policy, what an earlier follow-up sent or holds is not sent again."""
    hit = earlier.get((candidate.customer, candidate.document, _lower(candidate.address)))
    if hit is None or candidate.address is None:
        return candidate
    run_id, state, sent_at = hit
    if state == SENT:
        when = f" on {format_instant(sent_at)}" if sent_at else ""
        reason = Reason(
            "already_sent", f"follow-up run {run_id} sent it to {candidate.address}{when}"
        )
    else:
        reason = Reason(
            "in_another_run",
            f"follow-up run {run_id} holds it for {candidate.address} ({state})",
        )
    if any(r.code == reason.code for r in candidate.reasons):
        return candidate
    return Candidate(
        candidate.customer,
        candidate.contact,
        candidate.address,
        candidate.document,
        candidate.label,
        "excluded",
        (*candidate.reasons, reason),
        None,
        candidate.offset_days,
    )


def plan_again(
    connection: Connection, run_id: int, chosen: list[Chosen], at: datetime
) -> list[Candidate]:
    """Each chosen recipient planned again at ``at`` (see the module's docstring)."""
    run = read_run(connection, run_id)
    organisation = load_organisation(connection)
    definition = load_definition(connection, run.definition_id)
    keys = {(c.customer, c.document, _lower(c.address)) for c in chosen}
    pairs = {(c.customer, c.document) for c in chosen}

    # The ledger entries of the followed run's follow-up family for the chosen (a
    # per_trigger run records its targets when it is made, sent or not) do not
    # count: what a run of the family really sent or still holds is excluded
    # below, by its recipients' states (`_never_twice`).
    own_runs = family(connection, run_id)

    def own_entry(entry: HistoryFacts) -> bool:
        if entry.run_id not in own_runs:
            return False
        if definition.dedup == "per_trigger":
            return any(entry.customer_id == customer for customer, _ in pairs)
        return (entry.customer_id, entry.document_id, entry.address_lower) in keys or (
            entry.address_lower is None and (entry.customer_id, entry.document_id) in pairs
        )

    customers = sorted({c.customer for c in chosen})
    plan = plan_definition(
        connection,
        organisation,
        definition,
        at,
        customers=customers,
        replan=Replan(billing_at=run.planned_at, ignore_history=own_entry),
    )
    # The addresses the followed run already had for each (customer, document)
    # and that were not chosen: never taken in place of a corrected address.
    recipient = table_of(Recipient)
    others: dict[tuple[str, str | None], set[str | None]] = {}
    for r in connection.execute(
        select(recipient.c.customer_id, recipient.c.document_id, recipient.c.address).where(
            recipient.c.run_id == run_id,
            recipient.c.customer_id.in_(customers),
            recipient.c.id.notin_([c.id for c in chosen]),
        )
    ):
        others.setdefault((r.customer_id, r.document_id), set()).add(_lower(r.address))
    by_pair: dict[tuple[str, str | None], list[Candidate]] = {}
    for candidate in plan.candidates:
        if (candidate.customer, candidate.document) in pairs:
            by_pair.setdefault((candidate.customer, candidate.document), []).append(candidate)
    earlier = _earlier_follow_ups(connection, own_runs - {run_id}, customers)
    taken: list[Candidate] = []
    seen: set[tuple[str, str | None, str | None]] = set()
    for c in chosen:
        pair = (c.customer, c.document)
        now = by_pair.get(pair, [])
        same = [x for x in now if _lower(x.address) == _lower(c.address)]
        if not same:
            # The address is no longer filed under the key: where it is now.
            same = [x for x in now if _lower(x.address) not in others.get(pair, set())]
        for candidate in same:
            key = (candidate.customer, candidate.document, _lower(candidate.address))
            if key not in seen:
                seen.add(key)
                taken.append(_never_twice(candidate, earlier))
    return taken


@dataclass(frozen=True)
class Preview:
    """What a follow-up would plan, before anything is created: for a confirmation."""

    chosen: int
    candidates: list[Candidate]

    @property
    def decisions(self) -> dict[str, int]:
        counts = {"included": 0, "deferred": 0, "excluded": 0}
        for candidate in self.candidates:
            counts[candidate.decision] += 1
        return counts

    @property
    def by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for candidate in self.candidates:
            for reason in candidate.reasons:
                counts[reason.code] = counts.get(reason.code, 0) + 1
        return counts


def preview_follow_up(
    database: Database, run_id: int, chosen_by: Selection, at: datetime
) -> Preview:
    """The plan a follow-up would make now; nothing is written."""
    selection = check_selection(chosen_by)
    with database.connect() as connection:
        chosen = choose(connection, run_id, selection)
        if not chosen:
            return Preview(0, [])
        return Preview(len(chosen), plan_again(connection, run_id, chosen, at))


def start_follow_up(
    database: Database,
    run_id: int,
    chosen_by: Selection,
    at: datetime,
    clock: Clock,
    *,
    started_by: str | None = None,
) -> int:
    """Create the follow-up run (in one transaction) and return its id.

    Two follow-ups of one run made at the same moment (two terminals, two
    machines) must not both take a recipient: each plans from what it read, so
    the marks it read are checked as it writes its own (``_hand_on``). When
    another follow-up marked one of them meanwhile, the transaction is undone
    and planned again, now seeing the other — which then keeps the recipient.
    """
    selection = check_selection(chosen_by)
    for _ in range(MARK_ATTEMPTS):
        try:
            return _start(database, run_id, selection, at, clock, started_by)
        except _MarkedMeanwhile:
            continue
    raise FollowUpRefused(
        f"run {run_id} is being followed up by another process at this moment; "
        "nothing was started: try again"
    )


MARK_ATTEMPTS = 5


class _MarkedMeanwhile(Exception):
    """Another follow-up marked some of the chosen since they were read."""


def _start(
    database: Database,
    run_id: int,
    selection: Selection,
    at: datetime,
    clock: Clock,
    started_by: str | None,
) -> int:
    with database.connect() as connection:
        run = read_run(connection, run_id)
        if run.state in BEING_DELIVERED:
            raise FollowUpRefused(
                f"run {run_id} is {run.state}: follow it up once it has ended "
                f"(msgrun run stop {run_id}, or wait)"
            )
        chosen = choose(connection, run_id, selection)
        if not chosen:
            raise NothingChosen(
                f"no recipient of run {run_id} is {_describe(selection)}: nothing to follow up"
            )
        candidates = plan_again(connection, run_id, chosen, at)
        definition = load_definition(connection, run.definition_id)
        new_id = snapshot_plan(
            connection,
            definition,
            at,
            candidates,
            clock,
            started_by=started_by,
            follow_up_of=run_id,
        )
        _hand_on(connection, {c.id: c.handed_on_to for c in chosen}, new_id)
        return new_id


def _hand_on(connection: Connection, marks: dict[int, int | None], new_id: int) -> None:
    """Mark the chosen handed on to ``new_id``, each only if its mark is still the one
    read with them (``marks``); _MarkedMeanwhile (undoing the transaction) when one was not."""
    recipient = table_of(Recipient)
    by_mark: dict[int | None, list[int]] = {}
    for rid, mark in marks.items():
        by_mark.setdefault(mark, []).append(rid)
    marked = 0
    for mark, ids in by_mark.items():
        same = (
            recipient.c.handed_on_to.is_(None) if mark is None else recipient.c.handed_on_to == mark
        )
        for start in range(0, len(ids), 500):
            marked += connection.execute(
                update(recipient)
                .where(and_(recipient.c.id.in_(ids[start : start + 500]), same))
                .values(handed_on_to=new_id)
            ).rowcount
    if marked != len(marks):
        raise _MarkedMeanwhile()


def _describe(selection: Selection) -> str:
    parts = [*selection.states, *(f"with outcome {o}" for o in selection.outcomes)]
    return " or ".join(parts)
