"""Creating runs, reading them, and asking them to stop: the calls every client makes."""

from __future__ import annotations

import getpass
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select

from core.bounces import outcomes
from core.clock import Clock, SystemClock, format_instant
from core.delivery import holding, queries, registry, transitions
from core.delivery.states import (
    ENDED,
    EXCLUDED,
    HELD,
    PENDING,
    RECIPIENT_STATES,
    RUNNING,
    UNKNOWN,
)
from core.planner.facts import DefinitionFacts
from core.planner.load import PlanningError, load_definition, load_organisation
from core.planner.plan import DEFERRED, INCLUDED, Candidate, Gathered, Summary, iter_plan
from core.planner.reasons import Reason
from core.planner.render_check import check_rendering
from core.storage.database import Database
from core.storage.ledger import history_row, write_history
from core.storage.models import (
    Document,
    MessageRun,
    Recipient,
    RunCount,
    SmtpProfile,
    table_of,
)
from core.storage.notices import run_changed
from core.storage.sql import driver_instants, insert_rows, remembered
from core.vocabulary import CONCEPT_LABEL

INSERT_BATCH = 4096  # recipients a statement (SQLite: 4 of 1,024 rows)
# `run start --at`: an instant this close to now is now; further ahead, the run
# is scheduled (every recipient held until then); further back, refused.
AT_TOLERANCE_SECONDS = 5.0


class UnknownRun(LookupError):
    """No run has that id (bad usage: exit 2)."""


class TemplateFailsForEveryone(PlanningError):
    """The definition's templates fail for every candidate the plan sampled: a run
    would fail all its recipients one by one (bad input: exit 2, nothing created)."""


def who() -> str:
    """user@host of this process, for started_by and stop_requested_by."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def message_id(run_id: int, position: int, token: str, domain: str) -> str:
    """A recipient's Message-ID: unique, and the same on every retry and re-send."""
    return f"<msgrun.{run_id}.{position}.{token}@{domain}>"


def reasons_json(reasons: Sequence[Reason]) -> str:
    """``json.dumps([r.as_json() for r in reasons])``, the same text, written
    directly: a run of a million candidates writes a million of them."""
    if not reasons:
        return "[]"
    quote = encode_basestring_ascii
    return (
        "["
        + ", ".join(f'{{"code": {quote(r.code)}, "detail": {quote(r.detail)}}}' for r in reasons)
        + "]"
    )


def _initial_state(candidate: Candidate) -> str:
    if candidate.decision == INCLUDED:
        return PENDING
    if candidate.decision == DEFERRED:
        return HELD
    return EXCLUDED


def create_run(
    database: Database,
    definition_id: str,
    at: datetime,
    clock: Clock,
    *,
    started_by: str | None = None,
    environ: Mapping[str, str] | None = None,
    token: str | None = None,
) -> int:
    """Plan ``definition_id`` at ``at`` and snapshot the plan as a new run.

    ``token`` (random unless given) goes into every Message-ID of the run.
    """
    with database.connect() as connection:
        return create_run_on(
            connection,
            definition_id,
            at,
            clock,
            started_by=started_by,
            environ=environ,
            token=token,
            refuse_failing_templates=True,
        )


def create_run_on(
    connection: Connection,
    definition_id: str,
    at: datetime,
    clock: Clock,
    *,
    started_by: str | None = None,
    environ: Mapping[str, str] | None = None,
    token: str | None = None,
    customers: Sequence[str] | None = None,
    refuse_failing_templates: bool = False,
) -> int:
    """``create_run`` inside the caller's transaction (a trigger records its fire with it).

    ``customers``: plan only these (an event names them). A definition with
    ``per_trigger`` dedup records every customer it targets in the ledger now,
    so a second trigger before this run is delivered does not target them again.
    ``refuse_failing_templates``: raise ``TemplateFailsForEveryone``, creating
    nothing, when the templates fail for every candidate the plan sampled.
    """
    organisation = load_organisation(connection)
    definition = load_definition(connection, definition_id)
    # Each candidate goes into the run as it is decided: a plan of a million is never held.
    gathered = Gathered()
    candidates = iter_plan(
        connection, organisation, definition, at, Summary(), customers=customers, gathered=gathered
    )
    run_id = snapshot_plan(
        connection, definition, at, candidates, clock, started_by=started_by, token=token
    )
    if refuse_failing_templates:
        # The sample is the plan's first included candidates, known once they are stored;
        # raising rolls the caller's transaction back, the run with it.
        check = check_rendering(connection, definition.id, gathered.sample)
        if check.fails_for_everyone:
            raise TemplateFailsForEveryone(
                f"{definition_id}: the template fails to render for every one of the "
                f"{check.sampled} included recipients tried, so the run would fail them all; "
                f"nothing was created ({'; '.join(check.errors())}). msgrun plan "
                f"{definition_id} lists them"
            )
    return run_id


def snapshot_plan(
    connection: Connection,
    definition: DefinitionFacts,
    at: datetime,
    candidates: Iterable[Candidate],
    clock: Clock,
    *,
    started_by: str | None = None,
    token: str | None = None,
    follow_up_of: int | None = None,
) -> int:
    """A new run whose recipients are ``candidates``, in their order: its id.

    ``candidates`` is read once, as it comes (``iter_plan``'s generator).
    """
    profile = connection.execute(
        select(table_of(SmtpProfile)).where(
            table_of(SmtpProfile).c.id == definition.smtp_profile_id
        )
    ).one()
    now = clock.now()
    # A run planned for a later instant sends nothing before it: what would be
    # sent is held until `at` (or until its quiet hours end, when later).
    scheduled = at if (at - now).total_seconds() > AT_TOLERANCE_SECONDS else None
    token = token or secrets.token_hex(4)
    run_id: int = connection.execute(
        insert(table_of(MessageRun))
        .values(
            definition_id=definition.id,
            smtp_profile_id=profile.id,
            state=RUNNING,
            planned_at=at,
            created_at=now,
            started_by=started_by or who(),
            message_token=token,
            follow_up_of=follow_up_of,
        )
        .returning(table_of(MessageRun).c.id)
    ).scalar_one()
    run_changed(connection, run_id)  # consoles elsewhere show it at once
    domain = profile.from_address.rpartition("@")[2]
    counts = dict.fromkeys(RECIPIENT_STATES, 0)
    # Plain tuples straight through the driver, a batch at a time: SQLAlchemy's
    # per-row parameter processing cost more than the database's work.
    # An instant is converted once a batch (the plan's send times are few).
    convert = driver_instants(connection)
    instant, stamp = remembered(convert), convert(now)
    rows: list[tuple[Any, ...]] = []
    position = -1
    for position, candidate in enumerate(candidates):
        state = _initial_state(candidate)
        send_after = candidate.send_after
        if scheduled is not None and state != EXCLUDED:
            state, send_after = HELD, max(scheduled, send_after or scheduled)
        counts[state] += 1
        rows.append(
            (
                run_id,
                position,
                candidate.customer,
                candidate.contact,
                candidate.address,
                candidate.document,
                candidate.label,
                candidate.decision,
                reasons_json(candidate.reasons),
                instant(send_after),
                candidate.offset_days,
                state,
                message_id(run_id, position, token, domain) if state != EXCLUDED else None,
                0,
                stamp,
            )
        )
        if len(rows) == INSERT_BATCH:
            insert_rows(connection, "recipient", RECIPIENT_COLUMNS, rows, types=RECIPIENT_TYPES)
            rows, instant = [], remembered(convert)
    insert_rows(connection, "recipient", RECIPIENT_COLUMNS, rows, types=RECIPIENT_TYPES)
    connection.execute(
        insert(table_of(RunCount)),
        [{"run_id": run_id, "state": state, "shard": 0, "n": n} for state, n in counts.items()],
    )
    if definition.dedup == "per_trigger":
        _record_targets(connection, definition.id, run_id, now)
    if counts[EXCLUDED] == position + 1:
        transitions.complete_empty(connection, run_id, now)
    return run_id


# The recipient columns a new run writes (the rest start NULL), and their
# PostgreSQL types (a batch goes in as one statement of arrays there).
RECIPIENT_COLUMNS = (
    "run_id",
    "position",
    "customer_id",
    "contact_id",
    "address",
    "document_id",
    "label",
    "decision",
    "reasons",
    "send_after",
    "offset_days",
    "state",
    "message_id",
    "attempts",
    "updated_at",
)
RECIPIENT_TYPES = (
    "integer",
    "integer",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "jsonb",
    "timestamp",
    "integer",
    "text",
    "text",
    "integer",
    "timestamp",
)


def _record_targets(connection: Connection, definition_id: str, run_id: int, now: datetime) -> None:
    """One ledger entry per customer this run targets (rule 17, ``already_targeted``):
    read back from its stored recipients a batch at a time, never held whole."""
    recipient = table_of(Recipient)
    query = (
        select(recipient.c.customer_id)
        .where(recipient.c.run_id == run_id, recipient.c.decision != "excluded")
        .group_by(recipient.c.customer_id)
        .order_by(recipient.c.customer_id)
    )
    after: str | None = None
    while True:
        page = query if after is None else query.where(recipient.c.customer_id > after)
        targeted = list(connection.execute(page.limit(INSERT_BATCH)).scalars())
        if not targeted:
            return
        write_history(
            connection,
            [
                history_row(
                    definition_id=definition_id,
                    customer_id=customer_id,
                    address=None,
                    document_id=None,
                    offset_days=None,
                    at=now,
                    run_id=run_id,
                )
                for customer_id in targeted
            ],
        )
        after = targeted[-1]


@dataclass
class RunInfo:
    id: int
    definition_id: str
    smtp_profile_id: str
    state: str
    planned_at: datetime
    created_at: datetime
    started_by: str
    ended_at: datetime | None
    stop_requested_at: datetime | None
    stop_requested_by: str | None
    error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    counts: dict[str, int]
    # The run this one follows up, else None.
    follow_up_of: int | None = None

    def lease_live(self, now: datetime) -> bool:
        return (
            self.lease_owner is not None
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_counts(connection: Connection, run_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Counts by state for some runs: one indexed read, however large the runs."""
    counts: dict[int, dict[str, int]] = {
        run_id: dict.fromkeys(RECIPIENT_STATES, 0) for run_id in run_ids
    }
    table = table_of(RunCount)
    for run_id, state, n in connection.execute(
        select(table.c.run_id, table.c.state, func.sum(table.c.n))
        .where(table.c.run_id.in_(list(run_ids)))
        .group_by(table.c.run_id, table.c.state)
    ):
        counts[run_id][state] = int(n)
    return counts


def _run_info(row: Any, counts: dict[str, int]) -> RunInfo:
    return RunInfo(
        id=row.id,
        definition_id=row.definition_id,
        smtp_profile_id=row.smtp_profile_id,
        state=row.state,
        planned_at=row.planned_at,
        created_at=row.created_at,
        started_by=row.started_by,
        ended_at=row.ended_at,
        stop_requested_at=row.stop_requested_at,
        stop_requested_by=row.stop_requested_by,
        error=row.error,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        counts=counts,
        follow_up_of=row.follow_up_of,
    )


def next_due_at(database: Database, run_id: int) -> datetime | None:
    """When the run's next held or retrying recipient is due (None: nothing waits)."""
    with database.connect() as connection:
        return queries.next_due(connection, run_id)


def get_run(database: Database, run_id: int) -> RunInfo:
    with database.connect() as connection:
        return read_run(connection, run_id)


def read_run(connection: Connection, run_id: int) -> RunInfo:
    table = table_of(MessageRun)
    row = connection.execute(select(table).where(table.c.id == run_id)).first()
    if row is None:
        raise UnknownRun(f"unknown run {run_id}")
    return _run_info(row, read_counts(connection, [run_id])[run_id])


def list_runs(database: Database, limit: int = 100) -> list[RunInfo]:
    """The newest runs first."""
    table = table_of(MessageRun)
    with database.connect() as connection:
        rows = connection.execute(select(table).order_by(table.c.id.desc()).limit(limit)).all()
        counts = read_counts(connection, [row.id for row in rows])
    return [_run_info(row, counts[row.id]) for row in rows]


@dataclass
class StopOutcome:
    run: RunInfo
    recorded: bool  # False: the run had already ended


def request_stop(
    database: Database, run_id: int, clock: Clock, by: str | None = None
) -> StopOutcome:
    """Ask a run to stop, from any process; the delivering process honours it."""
    with database.connect() as connection:
        run = read_run(connection, run_id)
        if run.state in ENDED:
            return StopOutcome(run, recorded=False)
        now = clock.now()
        # A process of this machine that is gone (kill -9) is not waited for.
        interrupted = holding.holding(connection, run, now).interrupted
        live = not interrupted and (
            run.lease_live(now) or bool(registry.run_sharers(connection, run_id))
        )
        # Nobody delivers it (detached, waiting, or its process died): stopping
        # it is only a state change. Otherwise the process sees the request.
        if interrupted:
            registry.lapse_dead_here(connection, run_id, now)
        transitions.request_stop(connection, run_id, now, by or who(), delivered=live)
        if not live:
            registry.recover_run(connection, run_id, now)
        return StopOutcome(read_run(connection, run_id), recorded=True)


def unknown_handed_on(database: Database, run_id: int) -> int:
    """How many of the run's `unknown` recipients a follow-up took (it sends them)."""
    table = table_of(Recipient)
    with database.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).where(
                    table.c.run_id == run_id,
                    table.c.state == UNKNOWN,
                    table.c.handed_on_to.is_not(None),
                )
            ).scalar_one()
        )


def recipient_rows(
    database: Database, run_id: int, states: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Every recipient of a run (or those in ``states``), in plan order, as ``run show --json``."""
    table = table_of(Recipient)
    conditions = [table.c.run_id == run_id]
    if states:
        conditions.append(table.c.state.in_(list(states)))
    with database.connect() as connection:
        rows = connection.execute(select(table).where(*conditions).order_by(table.c.position)).all()
        found = outcomes.of_recipients(connection, [r.id for r in rows])
    return [
        {
            "customer": r.customer_id,
            "address": r.address,
            "document": r.document_id,
            "label": r.label,
            "state": r.state,
            "smtp_code": r.smtp_code,
            "smtp_reply": r.smtp_reply,
            "error": r.error,
            "message_id": r.message_id,
            "attempts": r.attempts,
            "send_after": format_instant(r.send_after) if r.send_after else None,
            "sent_at": format_instant(r.sent_at) if r.sent_at else None,
            "reasons": r.reasons,
            "outcome": found[r.id].as_json() if r.id in found else None,
            "handed_on_to": r.handed_on_to,
            "attachments": list(r.attachments or []),
        }
        for r in rows
    ]


def run_json(
    database: Database,
    run_id: int,
    *,
    with_recipients: bool = True,
    states: Sequence[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``run show --json``; ``now``: the clock leases are measured on (default this one)."""
    with database.connect() as connection:
        run = read_run(connection, run_id)
        held = holding.holding(connection, run, now or SystemClock().now())
    result: dict[str, Any] = {
        "id": str(run.id),
        "definition": run.definition_id,
        "state": run.state,
        # Nobody delivers it any more: domain.md, "An interrupted delivery shows".
        "interrupted": held.interrupted,
        "held_by": [holder.as_json() for holder in held.held_by],
        "counts": run.counts,
        "planned_at": format_instant(run.planned_at),
        "created_at": format_instant(run.created_at),
        "ended_at": format_instant(run.ended_at) if run.ended_at else None,
        "started_by": run.started_by,
        "stop_requested_by": run.stop_requested_by,
        "error": run.error,
        "follow_up_of": run.follow_up_of,
    }
    with database.connect() as connection:
        result["outcomes"] = outcomes.run_counts(connection, run_id)
    if with_recipients:
        result["recipients"] = recipient_rows(database, run_id, states)
    return result


__all__ = [
    "PlanningError",
    "TemplateFailsForEveryone",
    "UnknownRun",
    "create_run",
    "get_run",
    "list_runs",
    "request_stop",
]


@dataclass(frozen=True)
class RecipientView:
    """One recipient as the console lists it."""

    position: int
    customer_id: str
    address: str | None
    document_id: str | None
    label: str | None
    # The document's number now (a draft numbered since the run planned it).
    current_number: str | None
    state: str
    smtp_code: int | None
    smtp_reply: str | None
    error: str | None
    attempts: int
    updated_at: datetime | None
    reasons: list[dict[str, str]]
    message_id: str | None = None

    @classmethod
    def of_row(cls, r: Any) -> RecipientView:
        """From a row of ``recipient`` joined with the document's number as ``current_number``."""
        return cls(
            position=r.position,
            customer_id=r.customer_id,
            address=r.address,
            document_id=r.document_id,
            label=r.label,
            current_number=r.current_number,
            state=r.state,
            smtp_code=r.smtp_code,
            smtp_reply=r.smtp_reply,
            error=r.error,
            attempts=r.attempts,
            updated_at=r.updated_at,
            reasons=r.reasons,
            message_id=r.message_id,
        )

    @property
    def shown_label(self) -> str:
        """``Concept → 2026-0042`` when a draft has been numbered since the run planned it."""
        if self.label == CONCEPT_LABEL and self.current_number:
            return f"{CONCEPT_LABEL} → {self.current_number}"
        return self.label or "-"


def recipient_page(
    database: Database,
    run_id: int,
    *,
    states: Sequence[str] | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 50,
    matching: int | None = None,
) -> tuple[list[RecipientView], int]:
    """A window of a run's recipients in plan order, and how many match in all.

    The console shows runs of any size through windows like this one: it
    never holds more than a page of recipients. A caller that knows how many
    match (from the run's counters: all of them, or those in one state) passes
    ``matching`` and no count is made. Without a filter the window is a range
    of positions (plan positions are 0, 1, 2…), read straight off the index;
    with a state filter, the (run, state, position) index serves it.
    """
    recipient, document = table_of(Recipient), table_of(Document)
    conditions = [recipient.c.run_id == run_id]
    window_by_position = not states and not search
    if states:
        conditions.append(recipient.c.state.in_(list(states)))
    if search:
        pattern = f"%{search.lower()}%"
        conditions.append(
            or_(
                func.lower(recipient.c.address).like(pattern),
                func.lower(recipient.c.customer_id).like(pattern),
                func.lower(recipient.c.document_id).like(pattern),
                func.lower(recipient.c.label).like(pattern),
            )
        )
    with database.connect() as connection:
        total = matching
        if total is None:
            total = connection.execute(
                select(func.count()).select_from(recipient).where(*conditions)
            ).scalar_one()
        query = (
            select(recipient, document.c.number.label("current_number"))
            .select_from(recipient.outerjoin(document, document.c.id == recipient.c.document_id))
            .where(*conditions)
            .order_by(recipient.c.position)
            .limit(limit)
        )
        if window_by_position:
            query = query.where(recipient.c.position >= offset)
        else:
            query = query.offset(offset)
        rows = connection.execute(query).all()
    views = [RecipientView.of_row(r) for r in rows]
    return views, int(total)
