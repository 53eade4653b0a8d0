"""Starting runs and asking them to stop: a plan snapshotted into a run's recipients
(``create_run``), and a stop requested from any process (``request_stop``).

A run is read in ``core/run_info.py``; its recipients as the console and ``run
show --json`` show them, in ``core/views/``."""

from __future__ import annotations

import getpass
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import Connection, func, insert, select

from core.clock import Clock
from core.delivery import holding, registry, transitions
from core.planner.facts import DefinitionFacts
from core.planner.load import PlanningError, load_definition, load_organisation
from core.planner.plan import DEFERRED, INCLUDED, Candidate, Gathered, Summary, iter_plan
from core.planner.reasons import Reason
from core.planner.render_check import check_rendering
from core.run_info import RunInfo, read_run
from core.states import (
    ENDED,
    EXCLUDED,
    HELD,
    PENDING,
    RECIPIENT_STATES,
    RUNNING,
    UNKNOWN,
)
from core.storage.database import Database, retry_transient
from core.storage.ledger import history_row, write_history
from core.storage.models import (
    MessageRun,
    Recipient,
    RunCount,
    SmtpProfile,
    table_of,
)
from core.storage.notices import run_changed
from core.storage.sql import driver_instants, insert_rows, remembered
from core.suggested import command

INSERT_BATCH = 4096  # recipients a statement (SQLite: 4 of 1,024 rows)
# `run start --at`: an instant this close to now is now; further ahead, the run
# is scheduled (every recipient held until then); further back, refused.
AT_TOLERANCE_SECONDS = 5.0


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

    def once() -> int:
        # PostgreSQL: the plan is one snapshot however long it takes (it writes only rows
        # of its own run); SQLite's is, from the run's first row on (its writer's lock).
        with database.connect() if database.is_sqlite else database.snapshot() as connection:
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

    return retry_transient(once)


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
                f"nothing was created ({'; '.join(check.errors())}). "
                f"{command(f'plan {definition_id}')} lists them"
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
    created: Callable[[int], object] | None = None,
) -> int:
    """A new run whose recipients are ``candidates``, in their order: its id.

    ``candidates`` is read once, as it comes (``iter_plan``'s generator).
    ``created`` is told the new run's id before the first candidate is read.
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
    if created is not None:
        created(run_id)
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


__all__ = [
    "PlanningError",
    "TemplateFailsForEveryone",
    "create_run",
    "request_stop",
]
