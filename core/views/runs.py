"""Runs as an operator reads them: progress, what can be done next, every recipient's delivery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from core.delivery.runs import RecipientView, RunInfo, get_run, list_runs, recipient_page
from core.delivery.states import (
    COMPLETED,
    EXCLUDED,
    FAILED,
    RESTARTABLE,
    RUNNING,
    SENT,
    UNKNOWN,
)
from core.storage.database import Database
from core.storage.models import Definition, Recipient, table_of

# A recipient is done once it has an outcome: sent, failed, or unknown (maybe sent).
DONE_STATES = (SENT, FAILED, UNKNOWN)
# How msgrun marks a verdict it made itself (not a server's reply) in ``smtp_reply``.
OWN_VERDICT = "msgrun: "


def to_send(counts: Mapping[str, int]) -> int:
    """Recipients the run delivers: all but the excluded ones."""
    return sum(n for state, n in counts.items() if state != EXCLUDED)


def done(counts: Mapping[str, int]) -> int:
    """Recipients with an outcome: sent, failed or unknown."""
    return sum(counts.get(state, 0) for state in DONE_STATES)


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
    """A run with its progress: the counts an operator decides by."""

    run: RunInfo
    to_send: int
    done: int

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


def progress_of(run: RunInfo) -> RunProgress:
    return RunProgress(run, to_send(run.counts), done(run.counts))


@dataclass(frozen=True)
class RunsOverview:
    """The Runs screen: the newest runs, and how many definitions there are to plan."""

    runs: list[RunProgress]
    definitions: int

    @property
    def running(self) -> int:
        return sum(r.state == RUNNING for r in self.runs)


def runs_overview(database: Database, limit: int = 100) -> RunsOverview:
    runs = [progress_of(run) for run in list_runs(database, limit)]
    definition = table_of(Definition)
    with database.connect() as connection:
        definitions = connection.execute(select(func.count()).select_from(definition)).scalar_one()
    return RunsOverview(runs, int(definitions))


@dataclass(frozen=True)
class RunWindow:
    """A run and one window of its recipients (in plan order), with how many match in all."""

    progress: RunProgress
    rows: list[RecipientView]
    offset: int
    matching: int


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
) -> RunWindow:
    """A window of ``limit`` recipients from ``offset``, or the last window with ``last``.

    Without a search, how many match is read from the run's counters (instant
    however large the run); with one, it is counted unless ``matching`` says.
    """
    run = get_run(database, run_id)
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
    return RunWindow(progress_of(run), rows, offset, counted)


def reply_words(code: int | None, reply: str | None, error: str | None = None) -> str:
    """A recipient's outcome in words: the server's reply with its code, or msgrun's own verdict.

    msgrun's own verdicts (``msgrun: …``) are shown without the code, so they
    never read as if the server had said them.
    """
    if reply and reply.startswith(OWN_VERDICT):
        return reply
    if code:
        return f"{code} {reply or ''}".rstrip()
    return error or ""


@dataclass(frozen=True)
class RecipientDetail:
    """One recipient's delivery in full: the reply, the attempts and the times."""

    run_id: int
    definition_id: str
    position: int
    customer_id: str
    address: str | None
    document_id: str | None
    label: str | None
    decision: str
    reasons: list[dict[str, str]]
    state: str
    smtp_code: int | None
    smtp_reply: str | None
    error: str | None
    message_id: str | None
    attempts: int
    send_after: datetime | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    updated_at: datetime | None

    @property
    def outcome(self) -> str:
        return reply_words(self.smtp_code, self.smtp_reply, self.error)

    @property
    def by_msgrun(self) -> bool:
        """True when the outcome is msgrun's own verdict, not the server's words."""
        return bool(self.smtp_reply and self.smtp_reply.startswith(OWN_VERDICT))

    @property
    def has_message(self) -> bool:
        """An excluded recipient has no message: nothing was built for it."""
        return self.state != EXCLUDED and self.address is not None and self.message_id is not None

    def exclusion(self) -> str:
        """Why the plan excluded this recipient, reason by reason."""
        reasons = "; ".join(
            f"{r.get('code', '?')}: {r.get('detail', '')}".rstrip(": ") for r in self.reasons
        )
        return f"excluded by the plan — {reasons}" if reasons else "excluded by the plan"


class UnknownRecipient(LookupError):
    pass


def recipient_detail(database: Database, run_id: int, position: int) -> RecipientDetail:
    run = get_run(database, run_id)
    recipient = table_of(Recipient)
    with database.connect() as connection:
        row = connection.execute(
            select(recipient).where(recipient.c.run_id == run_id, recipient.c.position == position)
        ).first()
    if row is None:
        raise UnknownRecipient(f"run {run_id} has no recipient {position + 1}")
    return RecipientDetail(
        run_id=run_id,
        definition_id=run.definition_id,
        position=row.position,
        customer_id=row.customer_id,
        address=row.address,
        document_id=row.document_id,
        label=row.label,
        decision=row.decision,
        reasons=list(row.reasons or []),
        state=row.state,
        smtp_code=row.smtp_code,
        smtp_reply=row.smtp_reply,
        error=row.error,
        message_id=row.message_id,
        attempts=row.attempts,
        send_after=row.send_after,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
        updated_at=row.updated_at,
    )
