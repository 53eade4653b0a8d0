"""What reports said about recipients: each recipient's outcome, and a run's counts.

A recipient's outcome is the most serious of its reports (``SERIOUSNESS``:
complaint, then hard bounce, then soft bounce, then delay). Read here, in one
place, for ``run show --json``, ``run export``, follow-ups and the console.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, select

from core.bounces.model import OutcomeType
from core.clock import format_instant
from core.storage.models import Recipient, RecipientOutcome, table_of

SERIOUSNESS = ("complaint", "bounce_hard", "bounce_soft", "delay")
# The report types that are a recipient's outcome (after-sending.md). An unsubscribe a
# report carried (a mailed request, an ARF opt-out: inbox.md) is kept with its report
# and recorded as an unsubscribe, never an outcome.
OUTCOME_TYPES = tuple(t.value for t in OutcomeType if t is not OutcomeType.UNSUBSCRIBE)
RANK = {name: rank for rank, name in enumerate(SERIOUSNESS)}
CHUNK = 500


def is_outcome(table: Table) -> ColumnElement[bool]:
    """The rows of ``RecipientOutcome`` (``table``) that are outcomes (``OUTCOME_TYPES``)."""
    return table.c.type.in_(OUTCOME_TYPES)


def outcome_name(outcome_type: str, bounce_class: str | None) -> str:
    """``bounce_hard``, ``bounce_soft``, ``complaint`` or ``delay``."""
    if outcome_type == "bounce":
        return f"bounce_{bounce_class or 'hard'}"
    return outcome_type


@dataclass(frozen=True)
class RecipientOutcomeView:
    name: str
    type: str
    bounce_class: str | None
    status: str | None
    detail: str | None
    reported_at: datetime
    report_id: int

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "class": self.bounce_class,
            "status": self.status,
            "detail": self.detail,
            "reported_at": format_instant(self.reported_at),
            "report": self.report_id,
        }


def of_recipients(
    connection: Connection, recipient_ids: Sequence[int]
) -> dict[int, RecipientOutcomeView]:
    """The outcome of each of these recipients that has one (most serious, then newest)."""
    table = table_of(RecipientOutcome)
    found: dict[int, RecipientOutcomeView] = {}
    ids = list(recipient_ids)
    for start in range(0, len(ids), CHUNK):
        for row in connection.execute(
            select(table).where(
                table.c.recipient_id.in_(ids[start : start + CHUNK]), is_outcome(table)
            )
        ):
            view = RecipientOutcomeView(
                outcome_name(row.type, row.bounce_class),
                row.type,
                row.bounce_class,
                row.status,
                row.detail,
                row.reported_at,
                row.report_id,
            )
            best = found.get(row.recipient_id)
            if best is None or (RANK[view.name], best.reported_at) < (
                RANK[best.name],
                view.reported_at,
            ):
                found[row.recipient_id] = view
    return found


def of_run(connection: Connection, run_id: int) -> Sequence[Any]:
    """The outcomes of the run's recipients: (recipient_id, position, type, bounce_class).

    From the outcomes (few) to their recipients by key. SQLite, which keeps no
    statistics here, would walk every recipient of the run the other way round
    (10 ms for 100,000, at every repaint of the run's screen): the run is compared
    there as an expression it has no index for.
    """
    recipient, outcome = table_of(Recipient), table_of(RecipientOutcome)
    run = recipient.c.run_id + 0 if connection.dialect.name == "sqlite" else recipient.c.run_id
    return connection.execute(
        select(outcome.c.recipient_id, recipient.c.position, outcome.c.type, outcome.c.bounce_class)
        .select_from(outcome.join(recipient, recipient.c.id == outcome.c.recipient_id))
        .where(run == run_id, is_outcome(outcome))
    ).all()


def run_counts(connection: Connection, run_id: int) -> dict[str, int]:
    """How many of the run's recipients have each outcome (each counted once, its most serious)."""
    rows = of_run(connection, run_id)
    best: dict[int, str] = {}
    for row in rows:
        name = outcome_name(row.type, row.bounce_class)
        if row.recipient_id not in best or RANK[name] < RANK[best[row.recipient_id]]:
            best[row.recipient_id] = name
    counts = dict.fromkeys(SERIOUSNESS, 0)
    for name in best.values():
        counts[name] += 1
    return {key: counts[key] for key in ("bounce_hard", "bounce_soft", "complaint", "delay")}
