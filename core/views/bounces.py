"""Reports read back, as the console's Bounces screen shows them: newest first, unmatched too."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from core.bounces.queries import OutcomeRow, ReportView, get_report, list_outcomes
from core.storage.database import Database
from core.storage.models import BounceReport, RecipientOutcome, table_of

SHOWN = 200  # rows listed; the counts are of them all


@dataclass(frozen=True)
class BouncesOverview:
    """The newest report rows (one per outcome, one for a report without any), and counts."""

    rows: list[OutcomeRow]
    reports: int  # every stored report (not-reports left out)
    unmatched: int  # outcomes tied to no recipient
    limit: int = SHOWN  # at most this many rows were read

    @property
    def more(self) -> bool:
        """True when rows may have been left out (as many were read as were asked for)."""
        return len(self.rows) >= self.limit


def what(row: OutcomeRow) -> str:
    """``bounce hard``, ``complaint``, ``delay``; a report without outcomes: its kind."""
    if row.type is None:
        return row.kind
    return f"{row.type} {row.bounce_class}" if row.bounce_class else row.type


def bounces_overview(
    database: Database, limit: int = SHOWN, *, unmatched: bool = False
) -> BouncesOverview:
    """``unmatched``: only the outcomes tied to no recipient (the counts are of them all)."""
    rows = list_outcomes(database, unmatched=unmatched, limit=limit)
    report, outcome = table_of(BounceReport), table_of(RecipientOutcome)
    with database.connect() as connection:
        reports = connection.execute(
            select(func.count()).select_from(report).where(report.c.kind != "not_report")
        ).scalar_one()
        tied_to_none = connection.execute(
            select(func.count()).select_from(outcome).where(outcome.c.recipient_id.is_(None))
        ).scalar_one()
    return BouncesOverview(rows, int(reports), int(tied_to_none), limit)


def report_detail(database: Database, report_id: int) -> ReportView:
    """One report: how it was read and its raw bytes (``msgrun bounces show``)."""
    return get_report(database, report_id)
