"""A run's recipients as the console lists them: a window at a time (``recipient_page``),
and when the next held or retrying one is due (``next_due_at``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from core.delivery import queries
from core.storage.database import Database
from core.storage.models import Document, Recipient, table_of
from core.vocabulary import CONCEPT_LABEL


def next_due_at(database: Database, run_id: int) -> datetime | None:
    """When the run's next held or retrying recipient is due (None: nothing waits)."""
    with database.connect() as connection:
        return queries.next_due(connection, run_id)


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
