"""What became of each message: the one read model of a recipient's delivery.

``msgrun why`` (its *Deliveries*), ``run show`` (text and ``--json``) and the
console's recipient view and customer drill-down all read a recipient's
delivery here (after-sending.md, *The whole answer, after sending*): every
attempt with its reply, how a failed one settled, until when and why a held
one waits, the reasons of an excluded one, since when an unknown one is in
doubt, every report about it, and the follow-up it was handed on to.

Loaded set-based: the recipients' rows first, then their attempts, reports,
runs and customers' time zones in a few queries per chunk of recipients.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from core.bounces.outcomes import RANK, RecipientOutcomeView, is_outcome, outcome_name
from core.clock import format_instant
from core.delivery.starting import AT_TOLERANCE_SECONDS
from core.planner.reasons import Reason
from core.quiet_hours import zone
from core.states import EXCLUDED, FAILED, HELD, RETRYING, SENDING, SENT, UNKNOWN
from core.storage.models import (
    Customer,
    MessageRun,
    Organisation,
    Recipient,
    RecipientAttempt,
    RecipientOutcome,
    table_of,
)

CHUNK = 500
QUIET_HOURS = "quiet_hours"
SCHEDULED = "scheduled"
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt: its instant, the server's code and words (or the fault)."""

    at: datetime
    smtp_code: int | None
    reply: str | None
    settled: bool

    @property
    def words(self) -> str:
        """``421 4.7.0 Try again later``, or the fault's description."""
        if self.smtp_code is not None:
            return f"{self.smtp_code} {self.reply or ''}".rstrip()
        return self.reply or "no reply"

    def as_json(self) -> dict[str, Any]:
        return {"at": format_instant(self.at), "smtp_code": self.smtp_code, "reply": self.reply}


def ordinal(n: int) -> str:
    """``first`` … ``tenth``, then ``11th``."""
    if 1 <= n <= len(ORDINALS):
        return ORDINALS[n - 1]
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def span_words(seconds: float) -> str:
    """``40 s``, ``12 min 05 s``, ``1 h 02 min``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def short_reply(code: int, reply: str | None) -> str:
    """A refusal in short: its code and enhanced status (``550 5.1.1``), else its words."""
    words = (reply or "").split()
    if words and _is_status(words[0]):
        return f"{code} {words[0]}"
    return f"{code} {reply or ''}".rstrip()


def _is_status(word: str) -> bool:
    parts = word.split(".")
    return len(parts) == 3 and all(p.isdigit() for p in parts) and parts[0] in "245"


def outcome_words(outcome: RecipientOutcomeView) -> str:
    """``bounced hard 5.1.1 on 2026-12-05``, ``complaint on …``, ``delayed 4.4.1 on …``."""
    status = f" {outcome.status}" if outcome.status else ""
    day = f"{outcome.reported_at:%Y-%m-%d}"
    if outcome.type == "bounce":
        return f"bounced {outcome.bounce_class or 'hard'}{status} on {day}"
    if outcome.type == "complaint":
        return f"spam complaint on {day}"
    return f"delayed{status} on {day}"


# A reply msgrun wrote itself (the server said nothing): shown as msgrun's, never the server's.
OWN_VERDICT = "msgrun: "


def reply_words(code: int | None, reply: str | None, error: str | None = None) -> str:
    """The reply as shown: the server's code and words, msgrun's own verdict as it is
    (never read as if the server had said them), else the error."""
    if reply and reply.startswith(OWN_VERDICT):
        return reply
    if code:
        return f"{code} {reply or ''}".rstrip()
    return error or ""


@dataclass(frozen=True)
class Delivery:
    """One recipient of one run, and everything known of what became of its message."""

    recipient_id: int
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
    attempt_log: list[Attempt]
    send_after: datetime | None
    next_attempt_at: datetime | None
    first_attempt_at: datetime | None
    sent_at: datetime | None
    updated_at: datetime | None
    # Why a held one waits: its quiet hours (in ``timezone``), or the run's --at.
    held_because: str | None
    timezone: str
    # Every report about it, newest first.
    outcomes: list[RecipientOutcomeView]
    handed_on_to: int | None
    # What its message carried: [{"name", "bytes", "sha256"}] (attachments.md).
    attachments: list[dict[str, Any]]

    @property
    def reply(self) -> str:
        """Its last reply in words (``reply_words``)."""
        return reply_words(self.smtp_code, self.smtp_reply, self.error)

    @property
    def by_msgrun(self) -> bool:
        """True when its reply is msgrun's own verdict, not the server's words."""
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

    @property
    def held_until(self) -> datetime | None:
        return self.send_after if self.state == HELD else None

    @property
    def unknown_since(self) -> datetime | None:
        return self.updated_at if self.state == UNKNOWN else None

    @property
    def outcome(self) -> RecipientOutcomeView | None:
        """The most serious report about it (complaint, hard bounce, soft bounce, delay)."""
        best: RecipientOutcomeView | None = None
        for o in self.outcomes:
            if best is None or (RANK[o.name], best.reported_at) < (RANK[best.name], o.reported_at):
                best = o
        return best

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempt_log[-1] if self.attempt_log else None

    @property
    def last_words(self) -> str:
        """The last reply (or fault) in words, from the attempts, else the recipient's row."""
        last = self.last_attempt
        if last is not None:
            return last.words
        if self.smtp_code is not None:
            return f"{self.smtp_code} {self.smtp_reply or ''}".rstrip()
        return self.smtp_reply or self.error or ""

    @property
    def settled(self) -> str | None:
        """How a failed recipient settled, in words; None unless it is ``failed``."""
        if self.state != FAILED:
            return None
        last = self.last_attempt
        code = last.smtp_code if last is not None else self.smtp_code
        reply = last.reply if last is not None else self.smtp_reply or self.error
        n = max(self.attempts, len(self.attempt_log), 1)
        temporary = code is not None and 400 <= code < 500
        gave_up = temporary or (code is None and (self.error or "").startswith("gave up"))
        if gave_up:
            first = self.attempt_log[0].at if self.attempt_log else self.first_attempt_at
            end = last.at if last is not None else self.updated_at
            over = (
                f" over {span_words((end - first).total_seconds())}"
                if first is not None and end is not None
                else ""
            )
            said = (
                f"the last reply {code} {reply or ''}".rstrip()
                if code is not None
                else f"the last attempt: {reply or 'no reply'}"
            )
            return f"gave up after {n} attempts{over}: {said}"
        at = f"at the {ordinal(n)} attempt"
        if code is not None:
            return f"{short_reply(code, reply)} {at}"
        return f"{reply or self.error or 'failed'} ({at})"

    @property
    def reached(self) -> bool | None:
        """Whether the message reached the customer: True (sent, no bounce), False (failed,
        bounced, excluded), None (not settled yet, or unknown)."""
        if self.state == SENT:
            best = self.outcome
            return not (best is not None and best.type == "bounce")
        if self.state in (FAILED, EXCLUDED):
            return False
        return None

    def summary(self) -> str:
        """One line: the state and what decided it (``sent 250 2.0.0 Ok · bounced hard
        5.1.1 on 2026-12-05``, ``failed · 550 5.1.1 at the first attempt``, …)."""
        parts = [self.state_words()]
        best = self.outcome
        if best is not None:
            parts.append(outcome_words(best))
        if self.handed_on_to is not None:
            parts.append(f"→ run {self.handed_on_to}")
        return " · ".join(p for p in parts if p)

    def state_words(self) -> str:
        """The state and what decided it: the reply, how it settled, why it waits."""
        state = self.state
        if state == SENT:
            words = self.last_words
            return f"sent {words}".rstrip() if words else "sent"
        if state == FAILED:
            return f"failed · {self.settled}"
        if state == EXCLUDED:
            codes = ", ".join(r.get("code", "?") for r in self.reasons)
            return f"excluded · {codes}" if codes else "excluded"
        if state == HELD:
            return f"held · {self.held_words()}"
        if state == RETRYING:
            last = f", the last {self.last_words}" if self.last_words else ""
            nxt = (
                f" · next attempt {format_instant(self.next_attempt_at)}"
                if self.next_attempt_at is not None
                else ""
            )
            return f"retrying · {self.attempts} attempt{'s' * (self.attempts != 1)}{last}{nxt}"
        if state == UNKNOWN:
            since = format_instant(self.updated_at) if self.updated_at else "?"
            return f"unknown since {since} · it may have been delivered"
        if state == SENDING:
            return "sending · being sent now"
        return "pending · not tried yet" if not self.attempts else "pending · to be sent again"

    def held_words(self) -> str:
        """``until 2026-11-23 20:00 UTC (09:00 in Pacific/Auckland): quiet hours``."""
        until = self.held_until
        if until is None:
            return "until it is due"
        local = ""
        if self.held_because == QUIET_HOURS:
            local = f" ({until.astimezone(zone(self.timezone)):%H:%M} in {self.timezone})"
            why = "quiet hours in the customer's time zone"
        else:
            why = "the run is scheduled for then (run start --at)"
        return f"until {until:%Y-%m-%d %H:%M} UTC{local}: {why}"

    def as_json(self) -> dict[str, Any]:
        """As ``why --json`` lists it under ``deliveries``."""
        return {
            "run": self.run_id,
            "definition": self.definition_id,
            "document": self.document_id,
            "label": self.label,
            "address": self.address,
            "state": self.state,
            **self.detail_json(),
            "reasons": self.reasons,
            "outcomes": [o.as_json() for o in self.outcomes],
            "attachments": self.attachments,
            "handed_on_to": self.handed_on_to,
        }

    def detail_json(self) -> dict[str, Any]:
        """What ``run show --json`` adds to each recipient (``attempts`` stays the number)."""
        return {
            "attempts": self.attempts,
            "attempt_log": [a.as_json() for a in self.attempt_log],
            "settled": self.settled,
            "held_until": format_instant(self.held_until) if self.held_until else None,
            "held_because": self.held_because if self.state == HELD else None,
            "unknown_since": format_instant(self.unknown_since) if self.unknown_since else None,
        }


@dataclass(frozen=True, slots=True)
class _RunFacts:
    definition_id: str
    scheduled_for: datetime | None


def _run_facts(connection: Connection, run_ids: Iterable[int]) -> dict[int, _RunFacts]:
    run = table_of(MessageRun)
    facts: dict[int, _RunFacts] = {}
    for r in connection.execute(
        select(run.c.id, run.c.definition_id, run.c.planned_at, run.c.created_at).where(
            run.c.id.in_(sorted(set(run_ids)))
        )
    ):
        ahead = (r.planned_at - r.created_at).total_seconds()
        facts[r.id] = _RunFacts(
            r.definition_id, r.planned_at if ahead > AT_TOLERANCE_SECONDS else None
        )
    return facts


def _timezones(connection: Connection, customer_ids: Iterable[str]) -> dict[str, str]:
    customer, organisation = table_of(Customer), table_of(Organisation)
    default = connection.execute(select(organisation.c.timezone)).scalar() or "UTC"
    zones = dict.fromkeys(set(customer_ids), default)
    wanted = sorted(zones)
    for start in range(0, len(wanted), CHUNK):
        for cid, tz in connection.execute(
            select(customer.c.id, customer.c.timezone).where(
                customer.c.id.in_(wanted[start : start + CHUNK])
            )
        ):
            if tz:
                zones[cid] = tz
    return zones


def attempts_of(connection: Connection, recipient_ids: Sequence[int]) -> dict[int, list[Attempt]]:
    """Each recipient's attempts, in order."""
    table = table_of(RecipientAttempt)
    found: dict[int, list[Attempt]] = {}
    ids = list(recipient_ids)
    for start in range(0, len(ids), CHUNK):
        for row in connection.execute(
            select(table)
            .where(table.c.recipient_id.in_(ids[start : start + CHUNK]))
            .order_by(table.c.recipient_id, table.c.at, table.c.id)
        ):
            found.setdefault(row.recipient_id, []).append(
                Attempt(row.at, row.smtp_code, row.reply, bool(row.settled))
            )
    return found


def reports_of(
    connection: Connection, recipient_ids: Sequence[int]
) -> dict[int, list[RecipientOutcomeView]]:
    """Every report about each recipient, newest first."""
    table = table_of(RecipientOutcome)
    found: dict[int, list[RecipientOutcomeView]] = {}
    ids = list(recipient_ids)
    for start in range(0, len(ids), CHUNK):
        for row in connection.execute(
            select(table)
            .where(table.c.recipient_id.in_(ids[start : start + CHUNK]), is_outcome(table))
            .order_by(table.c.reported_at.desc(), table.c.id.desc())
        ):
            found.setdefault(row.recipient_id, []).append(
                RecipientOutcomeView(
                    outcome_name(row.type, row.bounce_class),
                    row.type,
                    row.bounce_class,
                    row.status,
                    row.detail,
                    row.reported_at,
                    row.report_id,
                )
            )
    return found


def held_because(state: str, send_after: datetime | None, run: _RunFacts | None) -> str | None:
    """Why a held recipient waits: the run's ``--at`` when it waits exactly until then,
    else its quiet hours (the planner's, or those found in force as it was to be sent)."""
    if state != HELD or send_after is None:
        return None
    if run is not None and run.scheduled_for is not None and send_after == run.scheduled_for:
        return SCHEDULED
    return QUIET_HOURS


def deliveries_of(connection: Connection, rows: Sequence[Row[Any]]) -> list[Delivery]:
    """The deliveries of these ``recipient`` rows, in their order."""
    ids = [r.id for r in rows]
    attempts = attempts_of(connection, ids)
    reports = reports_of(connection, ids)
    runs = _run_facts(connection, {r.run_id for r in rows})
    zones = _timezones(connection, {r.customer_id for r in rows})
    return [
        Delivery(
            recipient_id=r.id,
            run_id=r.run_id,
            definition_id=runs[r.run_id].definition_id if r.run_id in runs else "",
            position=r.position,
            customer_id=r.customer_id,
            address=r.address,
            document_id=r.document_id,
            label=r.label,
            decision=r.decision,
            reasons=list(r.reasons or []),
            state=r.state,
            smtp_code=r.smtp_code,
            smtp_reply=r.smtp_reply,
            error=r.error,
            message_id=r.message_id,
            attempts=r.attempts,
            attempt_log=attempts.get(r.id, []),
            send_after=r.send_after,
            next_attempt_at=r.next_attempt_at,
            first_attempt_at=r.first_attempt_at,
            sent_at=r.sent_at,
            updated_at=r.updated_at,
            held_because=held_because(r.state, r.send_after, runs.get(r.run_id)),
            timezone=zones.get(r.customer_id, "UTC"),
            outcomes=reports.get(r.id, []),
            handed_on_to=r.handed_on_to,
            attachments=list(r.attachments or []),
        )
        for r in rows
    ]


def customer_deliveries(connection: Connection, customer_id: str) -> list[Delivery]:
    """Every recipient of this customer in every run, newest run first (then plan order)."""
    recipient = table_of(Recipient)
    rows = connection.execute(
        select(recipient)
        .where(recipient.c.customer_id == customer_id)
        .order_by(recipient.c.run_id.desc(), recipient.c.position)
    ).all()
    return deliveries_of(connection, rows)


def run_deliveries(
    connection: Connection,
    run_id: int,
    states: Sequence[str] | None = None,
    outcomes: Sequence[str] | None = None,
) -> Iterator[Delivery]:
    """The run's recipients in plan order, those in ``states`` or with one of ``outcomes``
    (``bounce`` is either class) when either is named; read a chunk at a time."""
    recipient = table_of(Recipient)
    conditions = [recipient.c.run_id == run_id]
    wanted_ids: set[int] | None = None
    if outcomes:
        wanted_ids = set()
        outcome = table_of(RecipientOutcome)
        for rid, kind, klass in connection.execute(
            select(outcome.c.recipient_id, outcome.c.type, outcome.c.bounce_class)
            .select_from(outcome.join(recipient, recipient.c.id == outcome.c.recipient_id))
            .where(recipient.c.run_id == run_id, is_outcome(outcome))
        ):
            name = outcome_name(kind, klass)
            if name in outcomes or ("bounce" in outcomes and name.startswith("bounce_")):
                wanted_ids.add(rid)
    after = -1
    while True:
        query = (
            select(recipient)
            .where(*conditions, recipient.c.position > after)
            .order_by(recipient.c.position)
            .limit(CHUNK)
        )
        if states and wanted_ids is None:
            query = query.where(recipient.c.state.in_(list(states)))
        rows = connection.execute(query).all()
        if not rows:
            return
        after = rows[-1].position
        if wanted_ids is not None:
            named = set(states or ())
            rows = [r for r in rows if r.id in wanted_ids or r.state in named]
        yield from deliveries_of(connection, rows)


def recipient_delivery(connection: Connection, run_id: int, position: int) -> Delivery | None:
    """One recipient of a run, by its plan position."""
    recipient = table_of(Recipient)
    row = connection.execute(
        select(recipient).where(recipient.c.run_id == run_id, recipient.c.position == position)
    ).first()
    return deliveries_of(connection, [row])[0] if row is not None else None


def reach_words(run_id: int, deliveries: Sequence[Delivery]) -> str:
    """Whether run ``run_id`` reached the customer, from its deliveries to them, and what
    sends to them when it did not: ``which did not reach them: failed, 421 4.7.0 … after
    6 attempts — `run follow-up 9` sends to them``."""
    if not deliveries:
        return f"which has no recipient for them: nothing of run {run_id} went to them"
    reached = [d for d in deliveries if d.reached]
    if reached:
        return f"which reached them: {reached[0].summary()}"
    waiting = [d for d in deliveries if d.reached is None and d.state != UNKNOWN]
    if waiting:
        return f"which has not reached them yet: {waiting[0].summary()}"
    unknown = [d for d in deliveries if d.state == UNKNOWN]
    if unknown:
        d = unknown[0]
        since = format_instant(d.updated_at) if d.updated_at else "?"
        return f"which may have reached them: unknown since {since}" + _what_sends(
            d, run_id, "--state unknown"
        )
    d = deliveries[0]
    best = d.outcome
    if d.state == SENT and best is not None:
        how = f"sent, then {outcome_words(best)}"
        option = ""
    elif d.state == FAILED:
        last = d.last_attempt
        code = last.smtp_code if last is not None else d.smtp_code
        settled = d.settled or ""
        if settled.startswith("gave up") and code is not None:
            how = f"failed, {d.last_words} after {max(d.attempts, len(d.attempt_log))} attempts"
        else:
            how = f"failed, {settled}"
        option = ""
    else:
        codes = ", ".join(r.get("code", "?") for r in d.reasons)
        how = f"excluded ({codes})" if codes else "excluded"
        option = "--state excluded"
    return f"which did not reach them: {how}" + _what_sends(d, run_id, option)


def _what_sends(delivery: Delivery, run_id: int, option: str) -> str:
    if delivery.handed_on_to is not None:
        return f" — it was handed on to run {delivery.handed_on_to}"
    command = f"run follow-up {run_id}" + (f" {option}" if option else "")
    return f" — `{command}` sends to them"


def with_reach(reason: Reason, document: str | None, deliveries: Sequence[Delivery]) -> Reason:
    """``reason`` (``already_sent`` or ``already_targeted`` naming its run), saying whether
    that run reached the customer; any other reason as it is."""
    if reason.run is None or reason.code not in ("already_sent", "already_targeted"):
        return reason
    mine = [
        d
        for d in deliveries
        if d.run_id == reason.run
        and (reason.code != "already_sent" or document is None or d.document_id == document)
    ]
    return Reason(reason.code, f"{reason.detail}, {reach_words(reason.run, mine)}", reason.run)
