"""Reading back what was stored: reports and their outcomes, suppressions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, select

from core.planner.facts import SuppressionFacts
from core.storage import Database
from core.storage.models import BounceReport, Recipient, RecipientOutcome, Suppression
from core.suggested import command


class UnknownReport(LookupError):
    pass


class NotSuppressed(LookupError):
    pass


def stamp(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%S+00:00") if when else None


@dataclass(frozen=True)
class OutcomeRow:
    report: int
    read_at: datetime
    reported_at: datetime
    source: str
    kind: str  # the report's kind
    type: str | None  # the outcome's type; None for a report without outcomes
    bounce_class: str | None
    status: str | None
    address: str | None
    detail: str | None
    run: int | None
    customer: str | None
    matched_by: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "report": self.report,
            "read_at": stamp(self.read_at),
            "reported_at": stamp(self.reported_at),
            "source": self.source,
            "kind": self.kind,
            "type": self.type,
            "class": self.bounce_class,
            "status": self.status,
            "address": self.address,
            "detail": self.detail,
            "run": self.run,
            "customer": self.customer,
            "matched_by": self.matched_by,
        }


def list_outcomes(
    db: Database, run_id: int | None = None, unmatched: bool = False, limit: int | None = None
) -> list[OutcomeRow]:
    """Reports newest first, one row per outcome (one for a report without any).
    `run_id`: only outcomes tied to that run's recipients; `unmatched`: only
    outcomes tied to none."""
    query = (
        select(
            BounceReport.id,
            BounceReport.read_at,
            BounceReport.reported_at,
            BounceReport.source,
            BounceReport.kind,
            RecipientOutcome.type,
            RecipientOutcome.bounce_class,
            RecipientOutcome.status,
            RecipientOutcome.address,
            RecipientOutcome.detail,
            Recipient.run_id,
            Recipient.customer_id,
            RecipientOutcome.matched_by,
        )
        .outerjoin(RecipientOutcome, RecipientOutcome.report_id == BounceReport.id)
        .outerjoin(Recipient, Recipient.id == RecipientOutcome.recipient_id)
        .where(BounceReport.kind != "not_report")
        .order_by(BounceReport.read_at.desc(), BounceReport.id.desc(), RecipientOutcome.id)
    )
    if run_id is not None:
        query = query.where(Recipient.run_id == run_id)
    if unmatched:
        query = query.where(
            RecipientOutcome.id.is_not(None), RecipientOutcome.recipient_id.is_(None)
        )
    if limit is not None:
        query = query.limit(limit)
    with db.session() as session:
        return [OutcomeRow(*tuple(row)) for row in session.execute(query).all()]


@dataclass(frozen=True)
class ReportView:
    id: int
    message_key: str
    source: str
    kind: str
    why: str
    feedback_type: str | None
    original_message_id: str | None
    read_at: datetime
    reported_at: datetime
    raw: bytes
    outcomes: list[OutcomeRow]

    def how_read(self) -> list[str]:
        """How msgrun read the report, line by line (``bounces show`` and the console)."""
        lines = [
            f"report {self.id}: {self.kind}",
            f"  read from   {self.source} at {stamp(self.read_at)}",
            f"  reported at {stamp(self.reported_at)}",
            f"  known by    {self.message_key}",
            f"  why         {self.why}",
        ]
        if self.feedback_type:
            lines.append(f"  feedback    {self.feedback_type}")
        lines.append(f"  original    {self.original_message_id or '(no Message-ID returned)'}")
        for o in self.outcomes:
            what = o.type or "-"
            if o.bounce_class:
                what += f" {o.bounce_class}"
            tied = (
                f"run {o.run}, customer {o.customer}, by {o.matched_by}"
                if o.run is not None
                else "unmatched"
            )
            lines.append(
                f"  outcome     {what} {o.status or '(no status)'} {o.address or '-'}: {tied}"
            )
            if o.detail:
                lines.append(f"              {o.detail}")
        return lines

    def raw_text(self) -> str:
        """The raw message as text (undecodable bytes replaced), with plain line ends."""
        return self.raw.decode("utf-8", errors="replace").replace("\r\n", "\n")


def get_report(db: Database, report_id: int) -> ReportView:
    with db.session() as session:
        row = session.get(BounceReport, report_id)
        if row is None:
            raise UnknownReport(f"unknown report {report_id}")
        outcomes = session.execute(
            select(RecipientOutcome, Recipient.run_id, Recipient.customer_id)
            .outerjoin(Recipient, Recipient.id == RecipientOutcome.recipient_id)
            .where(RecipientOutcome.report_id == report_id)
            .order_by(RecipientOutcome.id)
        ).all()
        return ReportView(
            id=row.id,
            message_key=row.message_key,
            source=row.source,
            kind=row.kind,
            why=row.why,
            feedback_type=row.feedback_type,
            original_message_id=row.original_message_id,
            read_at=row.read_at,
            reported_at=row.reported_at,
            raw=row.raw,
            outcomes=[
                OutcomeRow(
                    row.id,
                    row.read_at,
                    row.reported_at,
                    row.source,
                    row.kind,
                    o.type,
                    o.bounce_class,
                    o.status,
                    o.address,
                    o.detail,
                    run,
                    customer,
                    o.matched_by,
                )
                for o, run, customer in outcomes
            ],
        )


@dataclass(frozen=True)
class SuppressionView:
    address: str
    reason: str
    since: date
    report: int | None
    run: int | None
    detail: str | None
    report_kind: str | None

    def describe(self) -> str:
        """`hard_bounce since 2026-11-28, from a bounce report on run 7: 5.1.1 user unknown`"""
        return SuppressionFacts(
            self.address, self.reason, self.since, self.report, self.run, self.detail
        ).describe()

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "reason": self.reason,
            "since": self.since.isoformat(),
            "report": self.report,
            "run": self.run,
            "detail": self.detail,
        }


def list_suppressions(db: Database) -> list[SuppressionView]:
    with db.session() as session:
        rows = session.execute(
            select(Suppression, BounceReport.kind)
            .outerjoin(BounceReport, BounceReport.id == Suppression.report_id)
            .order_by(Suppression.address_lower)
        ).all()
        return [
            SuppressionView(s.address, s.reason, s.since, s.report_id, s.run_id, s.detail, kind)
            for s, kind in rows
        ]


def lift_suppression(db: Database, address: str) -> SuppressionView:
    """Remove the address's suppression (case-insensitive); NotSuppressed when none."""
    with db.session() as session:
        row = session.get(Suppression, address.strip().lower())
        if row is None:
            raise NotSuppressed(f"{address} is not suppressed (see {command('suppressions list')})")
        view = SuppressionView(
            row.address, row.reason, row.since, row.report_id, row.run_id, row.detail, None
        )
        session.execute(
            delete(Suppression).where(
                func.lower(Suppression.address_lower) == address.strip().lower()
            )
        )
        return view
