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

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, select, update

from core.bounces import outcomes
from core.clock import Clock, format_instant
from core.delivery.starting import snapshot_plan
from core.planner.facts import HistoryFacts
from core.planner.load import load_definition, load_organisation
from core.planner.plan import Candidate, Replan, Summary, iter_candidates, planning_context
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
from core.suggested import command
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


# The followed run's recipients are read and planned again this many customers at a
# time: a follow-up of a million recipients is made in a page's memory.
PAGE = 2000


def _recipient_pages(connection: Connection, run_id: int) -> Iterator[list[Row[Any]]]:
    """The run's recipients a page of whole customers at a time (customers in id order,
    each page's recipients in plan order): what is chosen and planned again together."""
    recipient = table_of(Recipient)
    customers = (
        select(recipient.c.customer_id)
        .where(recipient.c.run_id == run_id)
        .distinct()
        .order_by(recipient.c.customer_id)
        .limit(PAGE)
    )
    columns = select(
        recipient.c.id,
        recipient.c.customer_id,
        recipient.c.address,
        recipient.c.document_id,
        recipient.c.state,
        recipient.c.handed_on_to,
    ).order_by(recipient.c.position)
    after: str | None = None
    while True:
        query = customers if after is None else customers.where(recipient.c.customer_id > after)
        ids = list(connection.execute(query).scalars())
        if not ids:
            return
        rows: list[Row[Any]] = list(
            connection.execute(
                columns.where(
                    recipient.c.run_id == run_id,
                    recipient.c.customer_id.between(ids[0], ids[-1]),
                )
            )
        )
        yield rows
        if len(ids) < PAGE:
            return
        after = ids[-1]


def choose(connection: Connection, rows: Sequence[Row[Any]], chosen: Selection) -> list[Chosen]:
    """The recipients among ``rows`` (a page of the run's) that the filter names, among
    the settled ones."""
    settled = [r for r in rows if r.state in SETTLED]
    found = outcomes.of_recipients(connection, [r.id for r in settled]) if chosen.outcomes else {}
    taken = []
    for r in settled:
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


def first_of_family(connection: Connection, run_id: int) -> int:
    """The run that ``run_id`` follows up, and so on up to the first."""
    run = table_of(MessageRun)
    root = run_id
    while (
        above := connection.execute(select(run.c.follow_up_of).where(run.c.id == root)).scalar()
    ) is not None:
        root = above
    return root


# PostgreSQL advisory locks: (this namespace, the family's first run) is one follow-up's.
FAMILY_LOCKS = 0x6D73_0F00


def lock_family(connection: Connection, run_id: int) -> None:
    """Hold, until this transaction ends, the right to follow up any run of ``run_id``'s
    follow-up family: two follow-ups of one family made at the same moment are made one
    after the other, the second seeing what the first took (else each would plan from
    what it read, and a recipient chosen in two runs of the family could be taken by
    both). PostgreSQL: a transaction's advisory lock (no row is locked: a worker may be
    updating the runs). SQLite: the database's write lock, taken now."""
    root = first_of_family(connection, run_id)
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(FAMILY_LOCKS, root)))
    else:
        run = table_of(MessageRun)
        connection.execute(
            update(run).where(run.c.id == root).values(follow_up_of=run.c.follow_up_of)
        )


def family(connection: Connection, run_id: int) -> set[int]:
    """The run, the run it follows up and so on to the first, and every follow-up of
    any of them: follow-ups of follow-ups never send one message twice either."""
    run = table_of(MessageRun)
    root = first_of_family(connection, run_id)
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


class Replanning:
    """What planning the followed run's recipients again needs, read once: the
    definition, the planner's context, the run's follow-up family (``family``)."""

    def __init__(
        self, connection: Connection, run_id: int, at: datetime, own_runs: set[int] | None = None
    ) -> None:
        run = read_run(connection, run_id)
        self.connection, self.run_id = connection, run_id
        self.definition = load_definition(connection, run.definition_id)
        # The ledger entries of the followed run's follow-up family for the chosen (a
        # per_trigger run records its targets when it is made, sent or not) do not
        # count: what a run of the family really sent or still holds is excluded
        # (`_never_twice`), by its recipients' states.
        self.own_runs = own_runs if own_runs is not None else family(connection, run_id)
        # The page being planned: its chosen (customer, document, address lower),
        # (customer, document) and customers.
        self.keys: set[tuple[str, str | None, str | None]] = set()
        self.pairs: set[tuple[str, str | None]] = set()
        self.customers: set[str] = set()
        self.ctx = planning_context(
            connection,
            load_organisation(connection),
            self.definition,
            at,
            replan=Replan(billing_at=run.planned_at, ignore_history=self.own_entry),
        )

    def own_entry(self, entry: HistoryFacts) -> bool:
        if entry.run_id not in self.own_runs:
            return False
        if self.definition.dedup == "per_trigger":
            return entry.customer_id in self.customers
        return (entry.customer_id, entry.document_id, entry.address_lower) in self.keys or (
            entry.address_lower is None and (entry.customer_id, entry.document_id) in self.pairs
        )


@dataclass(frozen=True)
class Replanned:
    """A page's chosen recipients planned again: the candidates the new run takes, and
    the chosen whose every candidate an earlier follow-up of the family has (sent or
    holds): those are handed on to that follow-up, not to the new run."""

    candidates: list[Candidate]
    elsewhere: dict[int, int]


def plan_again(replanning: Replanning, chosen: list[Chosen], rows: Sequence[Row[Any]]) -> Replanned:
    """Each chosen recipient of a page (``rows``, ``_recipient_pages``) planned again
    (see the module's docstring)."""
    connection = replanning.connection
    replanning.keys = {(c.customer, c.document, _lower(c.address)) for c in chosen}
    replanning.pairs = pairs = {(c.customer, c.document) for c in chosen}
    replanning.customers = {c.customer for c in chosen}
    customers = sorted(replanning.customers)
    planned = list(iter_candidates(connection, replanning.ctx, Summary(), customers))
    # The addresses the followed run already had for each (customer, document)
    # and that were not chosen: never taken in place of a corrected address.
    taken_ids = {c.id for c in chosen}
    others: dict[tuple[str, str | None], set[str | None]] = {}
    for r in rows:
        if r.id not in taken_ids and (r.customer_id, r.document_id) in pairs:
            others.setdefault((r.customer_id, r.document_id), set()).add(_lower(r.address))
    by_pair: dict[tuple[str, str | None], list[Candidate]] = {}
    for candidate in planned:
        if (candidate.customer, candidate.document) in pairs:
            by_pair.setdefault((candidate.customer, candidate.document), []).append(candidate)
    earlier_runs = replanning.own_runs - {replanning.run_id}
    earlier = _earlier_follow_ups(connection, earlier_runs, customers) if earlier_runs else {}
    taken: list[Candidate] = []
    elsewhere: dict[int, int] = {}
    seen: set[tuple[str, str | None, str | None]] = set()
    for c in chosen:
        pair = (c.customer, c.document)
        now = by_pair.get(pair, [])
        same = [x for x in now if _lower(x.address) == _lower(c.address)]
        if not same:
            # The address is no longer filed under the key: where it is now.
            same = [x for x in now if _lower(x.address) not in others.get(pair, set())]
        holders: list[int | None] = []
        for candidate in same:
            key = (candidate.customer, candidate.document, _lower(candidate.address))
            if key not in seen:
                seen.add(key)
                taken.append(_never_twice(candidate, earlier))
                hit = earlier.get(key) if candidate.address is not None else None
                holders.append(hit[0] if hit is not None else None)
        held = [holder for holder in holders if holder is not None]
        if held and len(held) == len(holders):
            elsewhere[c.id] = held[0]
    return Replanned(taken, elsewhere)


def replanned(
    connection: Connection,
    run_id: int,
    selection: Selection,
    at: datetime,
    own_runs: set[int] | None = None,
) -> Iterator[tuple[list[Chosen], Replanned]]:
    """The chosen recipients of the run, a page at a time, each page with what they
    are planned again as; pages where none is chosen are skipped. ``own_runs``: the
    follow-up family (``family``), when the caller has read it already."""
    replanning: Replanning | None = None
    for rows in _recipient_pages(connection, run_id):
        chosen = choose(connection, rows, selection)
        if chosen:
            replanning = replanning or Replanning(connection, run_id, at, own_runs)
            yield chosen, plan_again(replanning, chosen, rows)


@dataclass(frozen=True)
class Preview:
    """What a follow-up would plan, before anything is created: for a confirmation."""

    chosen: int
    decisions: dict[str, int]
    by_reason: dict[str, int]


def preview_follow_up(
    database: Database, run_id: int, chosen_by: Selection, at: datetime
) -> Preview:
    """The plan a follow-up would make now, counted; nothing is written."""
    selection = check_selection(chosen_by)
    chosen = 0
    decisions = {"included": 0, "deferred": 0, "excluded": 0}
    by_reason: dict[str, int] = {}
    with database.connect() as connection:
        for page, planned in replanned(connection, run_id, selection, at):
            chosen += len(page)
            for candidate in planned.candidates:
                decisions[candidate.decision] += 1
                for reason in candidate.reasons:
                    by_reason[reason.code] = by_reason.get(reason.code, 0) + 1
    return Preview(chosen, decisions, by_reason)


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
        lock_family(connection, run_id)
        run = read_run(connection, run_id)
        if run.state in BEING_DELIVERED:
            raise FollowUpRefused(
                f"run {run_id} is {run.state}: follow it up once it has ended "
                f"({command(f'run stop {run_id}')}, or wait)"
            )
        # The runs of the follow-up family as they are before anything is read: a
        # follow-up made meanwhile marks recipients with a run not among them.
        known = family(connection, run_id)
        pages = replanned(connection, run_id, selection, at, known)
        # The first page is planned before anything is written (and says whether
        # anything is chosen at all); the rest as the new run takes them.
        first = next(pages, None)
        if first is None:
            raise NothingChosen(
                f"no recipient of run {run_id} is {_describe(selection)}: nothing to follow up"
            )
        made: list[int] = []

        def candidates() -> Iterator[Candidate]:
            for chosen, planned in itertools.chain([first], pages):
                if any(c.handed_on_to is not None and c.handed_on_to not in known for c in chosen):
                    # Another follow-up of this family was made while this one read its
                    # pages (PostgreSQL reads what others committed since): plan again.
                    raise _MarkedMeanwhile()
                yield from planned.candidates
                _hand_on(
                    connection,
                    {c.id: c.handed_on_to for c in chosen},
                    {c.id: planned.elsewhere.get(c.id, made[0]) for c in chosen},
                )

        definition = load_definition(connection, run.definition_id)
        return snapshot_plan(
            connection,
            definition,
            at,
            candidates(),
            clock,
            started_by=started_by,
            follow_up_of=run_id,
            created=made.append,
        )


def _hand_on(connection: Connection, marks: dict[int, int | None], targets: dict[int, int]) -> None:
    """Mark each chosen handed on to its target (the new run, or the earlier follow-up
    that has its message), each only if its mark is still the one read with them
    (``marks``); _MarkedMeanwhile (undoing the transaction) when one was not."""
    recipient = table_of(Recipient)
    by_mark: dict[tuple[int | None, int], list[int]] = {}
    for rid, mark in marks.items():
        by_mark.setdefault((mark, targets[rid]), []).append(rid)
    marked = 0
    for (mark, target), ids in by_mark.items():
        same = (
            recipient.c.handed_on_to.is_(None) if mark is None else recipient.c.handed_on_to == mark
        )
        for start in range(0, len(ids), 500):
            marked += connection.execute(
                update(recipient)
                .where(and_(recipient.c.id.in_(ids[start : start + 500]), same))
                .values(handed_on_to=target)
            ).rowcount
    if marked != len(marks):
        raise _MarkedMeanwhile()


def _describe(selection: Selection) -> str:
    parts = [*selection.states, *(f"with outcome {o}" for o in selection.outcomes)]
    return " or ".join(parts)
