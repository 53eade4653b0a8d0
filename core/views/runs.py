"""Runs as an operator reads them: progress, what can be done next, every recipient's delivery."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, cast, func, or_, select
from sqlalchemy.types import Integer

from core.bounces import outcomes as report_outcomes
from core.clock import format_instant
from core.delivery.holding import NOBODY, Holding, Waiting, holding, holdings, waiting
from core.planner.report import dumps, nested
from core.run_info import RunInfo, list_runs, read_run
from core.states import (
    COMPLETED,
    DONE,
    ENDED,
    EXCLUDED,
    FAILED,
    LEFT_TO_SEND,
    RESTARTABLE,
    RUNNING,
    SENT,
    UNKNOWN,
    UNSETTLED,
)
from core.storage.database import Database
from core.storage.models import Definition, Document, Recipient, table_of
from core.views.deliveries import Delivery, recipient_delivery, run_deliveries
from core.views.export_rows import OUTCOME_FILTERS
from core.views.recipients import RecipientView, recipient_page
from core.views.run_json import run_json


def deliverable(counts: Mapping[str, int]) -> int:
    """Recipients the run delivers: all but the excluded ones (sent or not yet)."""
    return sum(n for state, n in counts.items() if state != EXCLUDED)


def done(counts: Mapping[str, int]) -> int:
    """Recipients with an outcome: sent, failed or unknown."""
    return sum(counts.get(state, 0) for state in DONE)


@dataclass(frozen=True)
class RestartCheck:
    """Whether a run can be restarted now, and if not, why in words."""

    allowed: bool
    nothing_left: bool  # a completed run: everything was sent
    why: str  # empty when allowed


def restart_check(run_id: int, state: str) -> RestartCheck:
    """The one test of "can this run be restarted" (console and ``run restart``)."""
    if state == COMPLETED:
        return RestartCheck(
            False, True, f"run {run_id} is completed: every recipient was sent; nothing to restart"
        )
    if state not in RESTARTABLE:
        return RestartCheck(False, False, f"run {run_id} is {state} and cannot be restarted")
    return RestartCheck(True, False, "")


@dataclass(frozen=True)
class RunProgress:
    """A run with its progress: the counts an operator decides by, and who delivers it."""

    run: RunInfo
    deliverable: int
    done: int
    holding: Holding = NOBODY
    # A `waiting` run's next due time and the workers alive to send it then (when read).
    waiting: Waiting | None = None

    @property
    def interrupted(self) -> bool:
        """`running` or `stopping`, and no process delivers it any more."""
        return self.holding.interrupted

    @property
    def delivered_now(self) -> bool:
        """A live process delivers it (a restart would have to wait for it)."""
        return bool(self.holding.live)

    @property
    def id(self) -> int:
        return self.run.id

    @property
    def state(self) -> str:
        return self.run.state

    def count(self, state: str) -> int:
        return self.run.counts.get(state, 0)

    @property
    def restart(self) -> RestartCheck:
        return restart_check(self.run.id, self.run.state)


def progress_of(run: RunInfo, held: Holding = NOBODY, waits: Waiting | None = None) -> RunProgress:
    return RunProgress(run, deliverable(run.counts), done(run.counts), held, waits)


@dataclass(frozen=True)
class RunsOverview:
    """The Runs screen: the newest runs, and how many definitions there are to plan."""

    runs: list[RunProgress]
    definitions: int

    @property
    def running(self) -> int:
        return sum(r.state == RUNNING and not r.interrupted for r in self.runs)

    @property
    def interrupted(self) -> int:
        return sum(r.interrupted for r in self.runs)


def runs_overview(
    database: Database, limit: int = 100, now: datetime | None = None
) -> RunsOverview:
    """``now``: the clock the runs' leases are measured on (default this machine's)."""
    listed = list_runs(database, limit)
    definition = table_of(Definition)
    with database.connect() as connection:
        definitions = connection.execute(select(func.count()).select_from(definition)).scalar_one()
        held = holdings(connection, listed, now or datetime.now(UTC))
    return RunsOverview([progress_of(run, held[run.id]) for run in listed], int(definitions))


@dataclass(frozen=True)
class RunWindow:
    """A run and one window of its recipients (in plan order), with how many match in all."""

    progress: RunProgress
    rows: list[RecipientView]
    offset: int
    matching: int
    # position → the recipient's outcome (``bounce_hard``…), for those that have one
    outcomes: dict[int, str] = field(default_factory=dict)
    # position → the follow-up run it was handed on to
    handed_on: dict[int, int] = field(default_factory=dict)
    # how many recipients have each outcome (bounce_hard, bounce_soft, complaint, delay)
    outcome_counts: dict[str, int] = field(default_factory=dict)


def _best_outcomes(connection: Connection, run_id: int) -> dict[int, tuple[int, str]]:
    """recipient id → (position, most serious outcome) for the run's recipients with reports.

    Reports are few next to a run's recipients: this reads only those.
    """
    best: dict[int, tuple[int, str]] = {}
    for row in report_outcomes.of_run(connection, run_id):
        name = report_outcomes.outcome_name(row.type, row.bounce_class)
        seen = best.get(row.recipient_id)
        if seen is None or report_outcomes.RANK[name] < report_outcomes.RANK[seen[1]]:
            best[row.recipient_id] = (row.position, name)
    return best


def outcome_matches(name: str | None, wanted: str) -> bool:
    """Whether an outcome is the one a filter names (``bounce`` is either class)."""
    if name is None:
        return False
    return name == wanted or (wanted == "bounce" and name.startswith("bounce_"))


def _outcome_window(
    database: Database,
    run_id: int,
    outcome: str,
    search: str | None,
    offset: int,
    limit: int,
    last: bool,
) -> tuple[list[RecipientView], int, int]:
    """A window of the recipients whose outcome is ``outcome``, how many, and the offset.

    Only recipients with a report are read (a few, next to a run's size).
    """
    recipient, document = table_of(Recipient), table_of(Document)
    with database.connect() as connection:
        best = _best_outcomes(connection, run_id)
        ids = [rid for rid, (_, name) in best.items() if outcome_matches(name, outcome)]
        found: list[Any] = []
        for start in range(0, len(ids), 500):
            query = (
                select(recipient, document.c.number.label("current_number"))
                .select_from(
                    recipient.outerjoin(document, document.c.id == recipient.c.document_id)
                )
                .where(recipient.c.id.in_(ids[start : start + 500]))
            )
            if search:
                pattern = f"%{search.lower()}%"
                query = query.where(
                    or_(
                        func.lower(recipient.c.address).like(pattern),
                        func.lower(recipient.c.customer_id).like(pattern),
                        func.lower(recipient.c.document_id).like(pattern),
                        func.lower(recipient.c.label).like(pattern),
                    )
                )
            found.extend(connection.execute(query).all())
    found.sort(key=lambda r: r.position)
    matching = len(found)
    offset = max(0, matching - limit) if last else max(0, min(offset, max(0, matching - limit)))
    rows = [RecipientView.of_row(r) for r in found[offset : offset + limit]]
    return rows, matching, offset


def _marks(
    database: Database, run_id: int, rows: Sequence[RecipientView]
) -> tuple[dict[int, str], dict[int, int]]:
    """The outcome and the follow-up of each recipient in a window."""
    if not rows:
        return {}, {}
    recipient = table_of(Recipient)
    positions = [view.position for view in rows]
    with database.connect() as connection:
        found = connection.execute(
            select(recipient.c.id, recipient.c.position, recipient.c.handed_on_to).where(
                recipient.c.run_id == run_id, recipient.c.position.in_(positions)
            )
        ).all()
        by_id = {r.id: r.position for r in found}
        seen = report_outcomes.of_recipients(connection, list(by_id))
    handed = {r.position: r.handed_on_to for r in found if r.handed_on_to is not None}
    return {by_id[rid]: view.name for rid, view in seen.items()}, handed


def run_window(
    database: Database,
    run_id: int,
    *,
    states: Sequence[str] | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 50,
    matching: int | None = None,
    last: bool = False,
    outcome: str | None = None,
    now: datetime | None = None,
) -> RunWindow:
    """A window of ``limit`` recipients from ``offset``, or the last window with ``last``.

    Without a search, how many match is read from the run's counters (instant
    however large the run); with one, it is counted unless ``matching`` says.
    ``outcome`` (one of ``OUTCOME_FILTERS``) shows only recipients with that outcome.
    ``now``: the clock the run's lease is measured on (default this machine's).
    """
    with database.connect() as connection:
        run = read_run(connection, run_id)
        outcome_counts = report_outcomes.run_counts(connection, run_id)
        held = holding(connection, run, now or datetime.now(UTC))
        waits = waiting(connection, run)
    if outcome is not None:
        if outcome not in OUTCOME_FILTERS:
            raise ValueError(f"unknown outcome {outcome!r} (one of: {', '.join(OUTCOME_FILTERS)})")
        rows, counted, offset = _outcome_window(
            database, run_id, outcome, search, offset, limit, last
        )
        marks, handed = _marks(database, run_id, rows)
        return RunWindow(
            progress_of(run, held, waits), rows, offset, counted, marks, handed, outcome_counts
        )
    if not search:
        matching = run.total if not states else sum(run.counts.get(s, 0) for s in states)
    if last and matching is None:
        _, matching = recipient_page(database, run_id, states=states, search=search, limit=0)
    if last:
        assert matching is not None
        offset = max(0, matching - limit)
    offset = max(0, offset)
    if matching is not None:
        offset = min(offset, max(0, matching - limit))
    rows, counted = recipient_page(
        database,
        run_id,
        states=states,
        search=search,
        offset=offset,
        limit=limit,
        matching=matching,
    )
    marks, handed = _marks(database, run_id, rows)
    return RunWindow(
        progress_of(run, held, waits), rows, offset, counted, marks, handed, outcome_counts
    )


# -- pictures -------------------------------------------------------------------------

RATE_MINUTES = 10  # the sending rate is drawn over at most the run's last ten minutes


@dataclass(frozen=True)
class SendRate:
    """Messages per second over the run's last minutes of sending, in equal buckets."""

    per_second: list[float]  # one value per bucket, oldest first
    bucket_seconds: int  # how many seconds each bucket spans
    first: datetime | None  # the start of the first bucket (UTC)
    last: datetime | None  # the last second anything was sent

    @property
    def peak(self) -> float:
        return max(self.per_second, default=0.0)


def _second_of(dialect: str, column: Any) -> Any:
    """A stored instant as whole seconds since 1970 (UTC), computed by the database."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), Integer)


def send_rate(
    database: Database, run_id: int, buckets: int = 60, minutes: int = RATE_MINUTES
) -> SendRate:
    """The run's sending rate: messages sent per second, counted by the database.

    The database groups the sent recipients by second over at most the last
    ``minutes`` minutes before the last one sent, so the cost is bounded by
    that window (a few hundred rows), not by the size of the run.
    """
    recipient = table_of(Recipient)
    sent = [recipient.c.run_id == run_id, recipient.c.sent_at.is_not(None)]
    with database.connect() as connection:
        newest = connection.execute(select(func.max(recipient.c.sent_at)).where(*sent)).scalar()
        if newest is None:
            return SendRate([], 1, None, None)
        if isinstance(newest, str):  # SQLite hands back text from an aggregate
            newest = datetime.fromisoformat(newest)
        if newest.tzinfo is None:
            newest = newest.replace(tzinfo=UTC)
        since = newest - timedelta(minutes=minutes)
        second = _second_of(database.engine.dialect.name, recipient.c.sent_at)
        counts = {
            int(s): int(n)
            for s, n in connection.execute(
                select(second.label("s"), func.count())
                .where(*sent, recipient.c.sent_at > since)
                .group_by(second)
            )
        }
    first, last = min(counts), max(counts)
    span = last - first + 1
    width = max(1, -(-span // max(1, buckets)))  # seconds per bucket, rounded up
    values = [0.0] * (-(-span // width))
    for s, n in counts.items():
        values[(s - first) // width] += n / width
    return SendRate(
        values,
        width,
        datetime.fromtimestamp(first, UTC),
        datetime.fromtimestamp(last, UTC),
    )


# The parts of a settled run's one bar, in the order they are drawn.
BAR_PARTS = ("delivered", "bounced", "complained", "failed", "unknown", "excluded")


def settled_parts(run: RunInfo, outcome_counts: Mapping[str, int]) -> dict[str, int] | None:
    """A settled run's recipients in the bar's parts; None while the run is not settled.

    ``delivered`` is sent with no bounce or complaint against it (a delay is not
    a verdict: it stays delivered).
    """
    if run.state not in ENDED:
        return None
    bounced = outcome_counts.get("bounce_hard", 0) + outcome_counts.get("bounce_soft", 0)
    complained = outcome_counts.get("complaint", 0)
    sent = run.counts.get(SENT, 0)
    return {
        "delivered": max(0, sent - bounced - complained),
        "bounced": bounced,
        "complained": complained,
        "failed": run.counts.get(FAILED, 0),
        "unknown": run.counts.get(UNKNOWN, 0),
        # A stopped or failed run leaves some unsent: they are part of the picture too.
        "not sent": sum(run.counts.get(state, 0) for state in UNSETTLED),
        "excluded": run.counts.get(EXCLUDED, 0),
    }


class UnknownRecipient(LookupError):
    pass


def recipient_detail(database: Database, run_id: int, position: int) -> Delivery:
    """One recipient in full, as the console's recipient view shows it."""
    with database.connect() as connection:
        delivery = recipient_delivery(connection, run_id, position)
    if delivery is None:
        raise UnknownRecipient(f"run {run_id} has no recipient {position + 1}")
    return delivery


# -- run show: every recipient as the JSON and the text say it -------------------------


def recipient_json(delivery: Delivery) -> dict[str, Any]:
    """One recipient of ``run show --json``: its delivery, attempts, outcome and hand-on."""
    d = delivery
    best = d.outcome
    return {
        "customer": d.customer_id,
        "address": d.address,
        "document": d.document_id,
        "label": d.label,
        "state": d.state,
        "smtp_code": d.smtp_code,
        "smtp_reply": d.smtp_reply,
        "error": d.error,
        "message_id": d.message_id,
        **d.detail_json(),
        "send_after": format_instant(d.send_after) if d.send_after else None,
        "sent_at": format_instant(d.sent_at) if d.sent_at else None,
        "reasons": d.reasons,
        "outcome": best.as_json() if best is not None else None,
        "handed_on_to": d.handed_on_to,
        "attachments": d.attachments,
    }


def run_show_json_text(
    database: Database,
    run_id: int,
    states: Sequence[str] | None = None,
    outcomes: Sequence[str] | None = None,
) -> Iterator[str]:
    """``run show --json``: the run, then its recipients (those the filters name), as
    the pieces of one indented JSON document, a recipient at a time as they are read:
    a run of a million is shown in flat memory. The same bytes as ``dumps`` of the run's
    ``run_json`` with a ``recipients`` list at its end."""
    head = dumps(run_json(database, run_id, with_recipients=False))
    yield head.removesuffix("\n}") + ',\n  "recipients": ['
    first = True
    with database.connect() as connection:
        for delivery in run_deliveries(connection, run_id, states, outcomes):
            yield ("\n    " if first else ",\n    ") + nested(recipient_json(delivery), 2)
            first = False
    yield "]\n}" if first else "\n  ]\n}"


def left_to_send(counts: Mapping[str, int]) -> int:
    """What is left to send: pending, held and retrying (not what was planned)."""
    return sum(counts.get(state, 0) for state in LEFT_TO_SEND)
