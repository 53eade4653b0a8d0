"""``msgrun run export``: a run's recipients as rows, streamed.

The columns are fixed by ``after-sending.md`` (Export). Rows come from the
database a batch at a time, in plan order, so a run of a million recipients
exports in constant memory. Nothing here writes: the caller turns the rows
into CSV or JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from core.attachments.evidence import export_text
from core.bounces import outcomes
from core.clock import format_instant
from core.states import RECIPIENT_STATES
from core.storage import Database
from core.storage.models import Customer, Recipient, table_of

COLUMNS: tuple[str, ...] = (
    "customer",
    "customer_name",
    "address",
    "document",
    "label",
    "state",
    "outcome",
    "status",
    "smtp_code",
    "smtp_reply",
    "reasons",
    "reason_details",
    "attempts",
    "last_attempt_at",
    "message_id",
    "attachments",
)

# What a recipient's outcome may be, as a filter names it: ``bounce`` is either class.
OUTCOME_FILTERS: tuple[str, ...] = ("bounce", "bounce_hard", "bounce_soft", "complaint", "delay")

BATCH = 2000


class BadFilter(ValueError):
    """A filter names a state or an outcome that does not exist."""


@dataclass(frozen=True)
class Selection:
    """Which recipients: those in one of ``states`` or with one of ``outcomes``; none named, all."""

    states: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()

    @property
    def everyone(self) -> bool:
        return not self.states and not self.outcomes

    @property
    def slug(self) -> str:
        """A short name for file names: ``failed-unknown``, ``bounce``; empty for everyone."""
        return "-".join((*self.states, *self.outcomes))


def parse_list(text: str | None, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """``failed,unknown`` → ("failed", "unknown"); an unknown word raises ``BadFilter``."""
    if text is None:
        return ()
    words = [w.strip() for w in text.split(",")]
    if not all(words):
        raise BadFilter(f"{what} {text!r}: an empty name in the list")
    wrong = [w for w in words if w not in allowed]
    if wrong:
        raise BadFilter(
            f"unknown {what} {', '.join(repr(w) for w in wrong)} (one of: {', '.join(allowed)})"
        )
    return tuple(dict.fromkeys(words))


def selection(states: str | None, outcomes: str | None) -> Selection:
    """The filters of ``--state`` and ``--outcome`` as the command line gives them."""
    return Selection(
        parse_list(states, RECIPIENT_STATES, "state"),
        parse_list(outcomes, OUTCOME_FILTERS, "outcome"),
    )


def _wanted_outcome(name: str | None, outcomes: tuple[str, ...]) -> bool:
    if name is None:
        return False
    return name in outcomes or ("bounce" in outcomes and name.startswith("bounce_"))


def _last_attempt(row: Any) -> str | None:
    if not row.attempts:
        return None
    instant = row.sent_at if row.state == "sent" and row.sent_at else row.updated_at
    return format_instant(instant) if instant else None


def _row(r: Any, outcome: tuple[str | None, str | None]) -> dict[str, Any]:
    name, status = outcome
    reasons = r.reasons or []
    return {
        "customer": r.customer_id,
        "customer_name": r.customer_name,
        "address": r.address,
        "document": r.document_id,
        "label": r.label,
        "state": r.state,
        "outcome": name,
        "status": status,
        "smtp_code": r.smtp_code,
        "smtp_reply": r.smtp_reply if r.smtp_reply is not None else r.error,
        "reasons": ";".join(reason["code"] for reason in reasons) or None,
        "reason_details": " | ".join(reason.get("detail", "") for reason in reasons) or None,
        "attempts": r.attempts,
        "last_attempt_at": _last_attempt(r),
        "message_id": r.message_id,
        "attachments": export_text(r.attachments),
    }


def _outcomes(connection: Any, recipient_ids: list[int]) -> dict[int, tuple[str, str | None]]:
    """(outcome name, status) of each recipient that has one."""
    return {
        rid: (view.name, view.status)
        for rid, view in outcomes.of_recipients(connection, recipient_ids).items()
    }


def rows(database: Database, run_id: int, chosen: Selection) -> Iterator[dict[str, Any]]:
    """Every chosen recipient of the run, in plan order, one dict per recipient."""
    recipient, customer = table_of(Recipient), table_of(Customer)
    query = (
        select(recipient, customer.c.name.label("customer_name"))
        .select_from(recipient.outerjoin(customer, customer.c.id == recipient.c.customer_id))
        .where(recipient.c.run_id == run_id)
        .order_by(recipient.c.position)
        .limit(BATCH)
    )
    if chosen.states and not chosen.outcomes:
        query = query.where(recipient.c.state.in_(chosen.states))
    after = -1
    while True:
        with database.connect() as connection:
            batch = connection.execute(query.where(recipient.c.position > after)).all()
            if not batch:
                return
            found = _outcomes(connection, [r.id for r in batch])
        for r in batch:
            outcome = found.get(r.id, (None, None))
            if (
                chosen.everyone
                or r.state in chosen.states
                or _wanted_outcome(outcome[0], chosen.outcomes)
            ):
                yield _row(r, outcome)
        after = batch[-1].position


def count(database: Database, run_id: int) -> int:
    """How many recipients the run has (for a progress bar)."""
    recipient = table_of(Recipient)
    with database.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(recipient).where(recipient.c.run_id == run_id)
            ).scalar_one()
        )


__all__ = [
    "COLUMNS",
    "OUTCOME_FILTERS",
    "RECIPIENT_STATES",
    "BadFilter",
    "Selection",
    "count",
    "rows",
    "selection",
]
