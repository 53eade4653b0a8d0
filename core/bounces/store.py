"""Reports read into the database: stored once, each outcome tied to a recipient,
hard bounces and complaints made suppressions (after-sending.md).

The classifier (`classify`) and the sources know nothing of the database; this
module is where they meet it. What a matched outcome does to the recipient's
delivery STATE (an `unknown` recipient becomes `sent`, a run with nothing failed
or unknown left becomes `completed`) belongs to the delivery engine's state
changes: `record_message` records the outcome and the suppression, and calls
`on_matched` for each matched outcome so that the engine can hook in there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from core import settings
from core.bounces.classify import classify
from core.bounces.model import Outcome, OutcomeType, Report, ReportKind
from core.bounces.sources import Source, SourceError, SourceMessage, StdinSource, check_source
from core.clock import Clock
from core.delivery.transitions import report_proves_sent
from core.messages.verp import parse_verp_token
from core.states import MAY_HAVE_ARRIVED
from core.storage import Database
from core.storage.database import error_words
from core.storage.models import (
    BounceReport,
    Definition,
    MessageRun,
    Organisation,
    Recipient,
    RecipientOutcome,
    Suppression,
)
from core.unsubscribe.records import Target, target_of
from core.unsubscribe.records import record as record_unsubscribe

ADDRESS_MATCH_DAYS = 30


class StoreFailed(Exception):
    """The database could not store what was read (the caller exits 75)."""


@dataclass
class ReadSummary:
    read: int = 0
    bounces: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    delays: int = 0
    auto_replies: int = 0
    unmatched: int = 0
    ignored: int = 0
    not_reports: int = 0
    already_read: int = 0
    unsubscribed: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "bounces": self.bounces,
            "hard": self.hard,
            "soft": self.soft,
            "complaints": self.complaints,
            "delays": self.delays,
            "auto_replies": self.auto_replies,
            "unmatched": self.unmatched,
            "ignored": self.ignored,
            "not_reports": self.not_reports,
            "already_read": self.already_read,
            "unsubscribed": self.unsubscribed,
            "reports": self.reports,
        }

    def line(self) -> str:
        def n(count: int, one: str, many: str) -> str:
            return f"{count} {one if count == 1 else many}"

        return (
            f"{self.read} read: {n(self.bounces, 'bounce', 'bounces')} "
            f"({self.hard} hard, {self.soft} soft), "
            f"{n(self.complaints, 'complaint', 'complaints')}, "
            f"{n(self.delays, 'delay', 'delays')}, "
            f"{n(self.auto_replies, 'auto-reply', 'auto-replies')}, "
            + (f"{self.unsubscribed} unsubscribed, " if self.unsubscribed else "")
            + f"{self.unmatched} unmatched, "
            f"{n(self.not_reports, 'not a report', 'not reports')}, "
            f"{self.already_read} already read"
        )


@dataclass(frozen=True)
class Match:
    recipient: Recipient
    matched_by: str  # message_id, verp, address


OnMatched = Callable[[Session, Recipient, RecipientOutcome], None]


def message_key(report: Report, raw: bytes) -> str:
    """How a report is known: its Message-ID, else a hash of its bytes."""
    if report.message_id:
        return report.message_id[:400]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def read_source(
    db: Database,
    source: Source,
    now: datetime,
    summary: ReadSummary,
    envelope_to: str | None = None,
    on_matched: OnMatched | None = None,
) -> ReadSummary:
    """Read every message of a source (already checked), store the reports, and mark
    them read in their source once stored. Standard input keeps even a non-report,
    and is the only source `envelope_to` applies to."""
    stdin = isinstance(source, StdinSource)
    for message in source.read():
        record_message(
            db,
            message,
            now,
            summary,
            envelope_to=envelope_to if stdin else None,
            keep_everything=stdin,
            on_matched=on_matched,
        )
    return summary


def record_message(
    db: Database,
    message: SourceMessage,
    now: datetime,
    summary: ReadSummary,
    *,
    envelope_to: str | None = None,
    keep_everything: bool = False,
    on_matched: OnMatched | None = None,
) -> None:
    """Classify one message, store it (once) with its outcomes, then mark it read."""
    report = classify(message.raw, envelope_to)
    if report.kind is ReportKind.NOT_REPORT:
        report = mailto_request(db, report) or report
    summary.read += 1
    if not report.kind.is_report and not keep_everything:
        summary.not_reports += 1
        return  # left exactly where it was, and not stored
    key = message_key(report, message.raw)
    try:
        with db.session() as session:
            if session.scalar(select(BounceReport.id).where(BounceReport.message_key == key)):
                stored = None
            else:
                stored = _store(session, message, report, key, now, on_matched)
    except IntegrityError:
        stored = None  # another reader stored the same report a moment ago
    except SQLAlchemyError as error:
        raise StoreFailed(
            f"cannot store the report from {message.source}: {error_words(error)}"
        ) from error
    if stored is None:
        summary.already_read += 1
    else:
        _count(summary, report, stored, message.source)
    if report.kind.is_report:
        message.mark_read()


def mailto_request(db: Database, report: Report) -> Report | None:
    """A request mailed to the organisation's unsubscribe address, LOCAL+TOKEN@DOMAIN
    (inbox.md), whose token verifies: an unsubscribe report. None otherwise (a token that
    does not verify changes nothing)."""
    try:
        with db.connect() as connection:
            forms = connection.execute(select(Organisation.unsubscribe)).scalar() or {}
            unsubscribe = str(forms.get("address") or "")
            if not unsubscribe:
                return None
            local, _, domain = unsubscribe.lower().rpartition("@")
            for address in report.delivered_to:
                their_local, _, their_domain = address.strip("<>").lower().rpartition("@")
                if their_domain != domain or not their_local.startswith(local + "+"):
                    continue
                target = target_of(connection, their_local[len(local) + 1 :])
                if target is None:
                    continue
                outcome = Outcome(
                    OutcomeType.UNSUBSCRIBE, None, None, target.address, "mailto request"
                )
                return replace(
                    report,
                    kind=ReportKind.UNSUBSCRIBE,
                    outcomes=(outcome,),
                    why=f"an unsubscribe request mailed to {address}",
                    extra={"run": str(target.run_id), "position": str(target.position)},
                )
    except SQLAlchemyError as error:
        raise StoreFailed(f"cannot read the unsubscribe settings: {error_words(error)}") from error
    return None


def _unsubscribe(session: Session, recipient: Recipient, how: str, at: datetime) -> bool:
    """Record the unsubscribe a report asks for; False for a kind that offers none."""
    kind = session.scalar(
        select(Definition.kind)
        .join(MessageRun, MessageRun.definition_id == Definition.id)
        .where(MessageRun.id == recipient.run_id)
    )
    if recipient.address is None or recipient.contact_id is None or kind is None:
        return False
    target = Target(
        recipient.run_id,
        recipient.position,
        recipient.address,
        recipient.customer_id,
        recipient.contact_id,
        kind,
        "",
    )
    return record_unsubscribe(session.connection(), target, how, at)


@dataclass(frozen=True)
class _Stored:
    report_id: int
    rows: list[tuple[Outcome, Match | None]]
    # Per row: whether an unsubscribe it asked for was recorded.
    unsubscribed: list[bool] = field(default_factory=list)


def _store(
    session: Session,
    message: SourceMessage,
    report: Report,
    key: str,
    now: datetime,
    on_matched: OnMatched | None,
) -> _Stored:
    reported_at = report.date or now
    row = BounceReport(
        message_key=key,
        source=message.source,
        kind=report.kind.value,
        why=report.why,
        feedback_type=report.feedback_type,
        original_message_id=report.original_message_id,
        raw=message.raw,
        read_at=now,
        reported_at=reported_at,
    )
    session.add(row)
    session.flush()
    rows: list[tuple[Outcome, Match | None]] = []
    unsubscribed: list[bool] = []
    for outcome in report.outcomes:
        match = find_recipient(session, report, outcome, now)
        recorded = False
        if match is not None and outcome.type is OutcomeType.UNSUBSCRIBE:
            how = "mailto" if "run" in report.extra else "feedback_report"
            recorded = _unsubscribe(session, match.recipient, how, now)
        unsubscribed.append(recorded)
        stored = RecipientOutcome(
            report_id=row.id,
            recipient_id=match.recipient.id if match else None,
            address=outcome.address,
            type=outcome.type.value,
            bounce_class=outcome.bounce_class,
            status=outcome.status,
            detail=outcome.diagnostic,
            reported_at=reported_at,
            matched_by=match.matched_by if match else None,
        )
        session.add(stored)
        session.flush()
        if match is not None:
            _suppress(session, match.recipient, stored, row)
            # The report proves the message reached a server: `unknown` becomes `sent`.
            report_proves_sent(session.connection(), match.recipient.id, reported_at, now)
            if on_matched is not None:
                on_matched(session, match.recipient, stored)
        rows.append((outcome, match))
    return _Stored(row.id, rows, unsubscribed)


def find_recipient(
    session: Session, report: Report, outcome: Outcome, now: datetime
) -> Match | None:
    """The recipient an outcome is about: by the original's Message-ID, then the
    VERP token of the address the report was delivered to, then the address."""
    if "run" in report.extra and "position" in report.extra:  # a mailto unsubscribe's token
        found = session.scalars(
            select(Recipient).where(
                Recipient.run_id == int(report.extra["run"]),
                Recipient.position == int(report.extra["position"]),
            )
        ).first()
        if found is not None:
            return Match(found, "token")
    if report.original_message_id:
        found = session.scalars(
            select(Recipient)
            .where(Recipient.message_id == report.original_message_id)
            .order_by(Recipient.id.desc())
            .limit(1)
        ).first()
        if found is not None:
            return Match(found, "message_id")
    for address in report.delivered_to:
        token = parse_verp_token(address)
        if token is None:
            continue
        found = session.scalars(
            select(Recipient).where(
                Recipient.run_id == token.run_id, Recipient.position == token.recipient
            )
        ).first()
        if found is not None:
            return Match(found, "verp")
    if outcome.address:
        attempted = func.coalesce(Recipient.sent_at, Recipient.updated_at)
        found = session.scalars(
            select(Recipient)
            .where(
                func.lower(Recipient.address) == outcome.address.lower(),
                Recipient.state.in_(MAY_HAVE_ARRIVED),
                attempted >= now - timedelta(days=ADDRESS_MATCH_DAYS),
                or_(attempted <= now, attempted.is_(None)),
            )
            .order_by(attempted.desc(), Recipient.id.desc())
            .limit(1)
        ).first()
        if found is not None:
            return Match(found, "address")
    return None


def _suppress(
    session: Session, recipient: Recipient, outcome: RecipientOutcome, report: BounceReport
) -> None:
    """A hard bounce or a complaint suppresses the recipient's address (an address
    already suppressed keeps its suppression as it is)."""
    if outcome.type == OutcomeType.COMPLAINT.value:
        reason = "spam_complaint"
    elif outcome.type == OutcomeType.BOUNCE.value and outcome.bounce_class == "hard":
        reason = "hard_bounce"
    else:
        return
    address = recipient.address or outcome.address
    if not address:
        return
    if session.get(Suppression, address.lower()) is not None:
        return
    words = " ".join(w for w in (outcome.status, outcome.detail) if w) or None
    session.add(
        Suppression(
            address_lower=address.lower(),
            address=address,
            reason=reason,
            since=outcome.reported_at.date(),
            report_id=report.id,
            run_id=recipient.run_id,
            detail=words,
        )
    )
    session.flush()


def _count(summary: ReadSummary, report: Report, stored: _Stored, source: str) -> None:
    if report.kind is ReportKind.AUTO_REPLY:
        summary.auto_replies += 1
        summary.reports.append(_entry(source, stored.report_id, "auto_reply", None, None, None))
        return
    if report.kind is ReportKind.NOT_REPORT:
        summary.not_reports += 1
        return
    if not stored.rows:
        summary.ignored += 1
        return
    for index, (outcome, match) in enumerate(stored.rows):
        if outcome.type is OutcomeType.UNSUBSCRIBE and match is not None:
            if not stored.unsubscribed[index]:
                summary.ignored += 1  # an opt-out about a kind nobody can opt out of
                continue
            summary.unsubscribed += 1
        entry = _entry(
            source,
            stored.report_id,
            outcome.type.value,
            outcome.bounce_class,
            outcome.status,
            outcome.address,
            match,
        )
        summary.reports.append(entry)
        if match is None:
            summary.unmatched += 1
        elif outcome.type is OutcomeType.BOUNCE:
            summary.bounces += 1
            if outcome.bounce_class == "hard":
                summary.hard += 1
            else:
                summary.soft += 1
        elif outcome.type is OutcomeType.COMPLAINT:
            summary.complaints += 1
        elif outcome.type is OutcomeType.DELAY:
            summary.delays += 1


def _entry(
    source: str,
    report_id: int,
    kind: str,
    bounce_class: str | None,
    status: str | None,
    address: str | None,
    match: Match | None = None,
) -> dict[str, Any]:
    return {
        "source": source,
        "report": report_id,
        "kind": kind,
        "class": bounce_class,
        "status": status,
        "address": address,
        "run": match.recipient.run_id if match else None,
        "customer": match.recipient.customer_id if match else None,
        "matched_by": match.matched_by if match else None,
    }


# --- what `msgrun worker` reads about once a minute -----------------------------------

_PG_LOCK_KEY = 727275


def configured_sources(environ: Mapping[str, str]) -> list[Source]:
    """The sources named in MSGRUN_BOUNCE_SOURCES (separated by spaces); SourceError
    naming every bad one; SettingError when it names standard input."""
    sources: list[Source] = []
    problems: list[str] = []
    for spec in settings.bounce_sources(environ):
        try:
            sources.append(check_source(spec, environ))
        except SourceError as error:
            problems.append(f"{settings.BOUNCE_SOURCES}: {error}")
    if problems:
        raise SourceError("; ".join(problems))
    return sources


@contextlib.contextmanager
def reading_turn(db: Database) -> Iterator[bool]:
    """True while this process holds the turn to read the configured sources (one
    process at a time, across machines on PostgreSQL); False, at once, when
    another process holds it."""
    if db.is_sqlite:
        assert db.url.database is not None
        path = Path(db.url.database).expanduser().resolve()
        with open(path.with_name(path.name + ".bounces-lock"), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with db.engine.connect() as connection:
        got = bool(connection.scalar(text(f"SELECT pg_try_advisory_lock({_PG_LOCK_KEY})")))
        connection.commit()
        try:
            yield got
        finally:
            if got:
                connection.execute(text(f"SELECT pg_advisory_unlock({_PG_LOCK_KEY})"))
                connection.commit()


def read_configured_sources(
    db: Database,
    environ: Mapping[str, str],
    clock: Clock,
    on_matched: OnMatched | None = None,
) -> ReadSummary | None:
    """Read MSGRUN_BOUNCE_SOURCES once, if no other process is reading them now
    (None then, or when none is configured). SourceError for a bad source,
    SourceUnavailable for an IMAP server that cannot be reached, StoreFailed."""
    sources = configured_sources(environ)
    if not sources:
        return None
    with reading_turn(db) as mine:
        if not mine:
            return None
        summary = ReadSummary()
        for source in sources:
            read_source(db, source, clock.now(), summary, on_matched=on_matched)
        return summary
