"""A recipient that may be sent now, as its message is built from it (``Due``).

Delivery's queries read it (``core.delivery.queries.load_due``), composition
builds a message from it (``compose.draft_of``), and the planner's render check
makes one per sampled candidate: here, below all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Due:
    """A recipient that may be sent now, with what its message is built from."""

    id: int
    state: str
    position: int
    customer_id: str
    contact_id: str | None
    address: str
    document_id: str | None
    offset_days: int | None
    message_id: str
    attempts: int
    first_attempt_at: datetime | None = None
