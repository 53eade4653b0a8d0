"""``msgrun run show --json``: a run, who holds it, its outcomes and every recipient."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.bounces import outcomes
from core.clock import SystemClock, format_instant
from core.delivery import holding
from core.run_info import read_run
from core.storage.database import Database
from core.storage.models import Recipient, table_of


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
