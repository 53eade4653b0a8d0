"""Finding a customer by id, name or address, and the drill-down (``why`` and the console)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, func, or_, select

from core.bounces.outcomes import (
    RecipientOutcomeView,
    is_outcome,
    of_recipients,
    outcome_name,
)
from core.planner.explain import CustomerReport, explain_customer
from core.storage.database import Database
from core.storage.models import Address, Customer, Recipient, RecipientOutcome, table_of
from core.views.deliveries import Delivery, customer_deliveries, with_reach
from core.views.runs import recipient_detail

SHOWN = 100  # matches listed; the count is of them all
LEDGER_CODES = ("already_sent", "already_targeted")


@dataclass(frozen=True)
class CustomerMatch:
    id: str
    name: str


@dataclass(frozen=True)
class CustomerMatches:
    """The customers a query finds, how many in all, and the nearest ids when none does.

    The query is read case-insensitively: an id equal to it is the one
    customer meant; else a name or an address equal to it; else every
    customer whose id, name or one of whose addresses contains it.
    """

    query: str
    total: int
    matches: list[CustomerMatch]
    nearest: list[str] = field(default_factory=list)

    @property
    def unique(self) -> CustomerMatch | None:
        return self.matches[0] if self.total == 1 else None

    def headline(self) -> str:
        """ "2,345 customers match 'a' — showing the first 100", in words."""
        if self.total == 0:
            near = f"; nearest ids: {', '.join(self.nearest)}" if self.nearest else ""
            return f"No customer matches {self.query!r}{near}"
        noun = "customer matches" if self.total == 1 else "customers match"
        shown = (
            f" — showing the first {len(self.matches):,}" if len(self.matches) < self.total else ""
        )
        return f"{self.total:,} {noun} {self.query!r}{shown}"


def find_customers(database: Database, query: str, limit: int = SHOWN) -> CustomerMatches:
    with database.connect() as connection:
        return find_customers_on(connection, query, limit)


def find_customers_on(connection: Connection, query: str, limit: int = SHOWN) -> CustomerMatches:
    query = query.strip()
    customer, address = table_of(Customer), table_of(Address)
    lowered = query.lower()
    if not lowered:
        return CustomerMatches(query, 0, [])
    exact_address = select(address.c.customer_id).where(address.c.address_lower == lowered)
    contains_address = select(address.c.customer_id).where(
        address.c.address_lower.like(f"%{_escape_like(lowered)}%", escape="\\")
    )
    pattern = f"%{_escape_like(lowered)}%"
    tiers = [
        func.lower(customer.c.id) == lowered,
        or_(func.lower(customer.c.name) == lowered, customer.c.id.in_(exact_address)),
        or_(
            func.lower(customer.c.id).like(pattern, escape="\\"),
            func.lower(customer.c.name).like(pattern, escape="\\"),
            customer.c.id.in_(contains_address),
        ),
    ]
    for condition in tiers:
        total = connection.execute(
            select(func.count()).select_from(customer).where(condition)
        ).scalar_one()
        if total:
            rows = connection.execute(
                select(customer.c.id, customer.c.name)
                .where(condition)
                .order_by(customer.c.id)
                .limit(limit)
            ).all()
            return CustomerMatches(query, int(total), [CustomerMatch(r.id, r.name) for r in rows])
    ids = list(connection.execute(select(customer.c.id)).scalars())
    by_lower = {i.lower(): i for i in ids}
    nearest = difflib.get_close_matches(lowered, list(by_lower), n=5, cutoff=0.5)
    return CustomerMatches(query, 0, [], [by_lower[n] for n in nearest])


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def customer_report(
    database: Database,
    customer_id: str,
    at: datetime,
    *,
    definition_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> CustomerReport:
    """Everything stored about one customer, what became of every message to it (its
    deliveries, newest run first), and every decision about it (the drill-down).

    A decision ``already_sent`` or ``already_targeted`` says whether the run holding
    the ledger entry reached the customer, and what sends to them when it did not.
    """
    report = explain_customer(
        database, customer_id, at, definition_id=definition_id, environ=environ
    )
    with database.connect() as connection:
        report.deliveries = customer_deliveries(connection, customer_id)
    for plan in report.plans:
        for candidate in plan.candidates:
            if any(r.code in LEDGER_CODES and r.run is not None for r in candidate.reasons):
                candidate.reasons = tuple(
                    with_reach(r, candidate.document, report.deliveries) for r in candidate.reasons
                )
    return report


@dataclass(frozen=True)
class ReportAbout:
    """One report's outcome about one of the customer's recipients (the drill-down)."""

    report: int
    reported_at: datetime
    outcome: str  # bounce_hard, bounce_soft, complaint or delay
    status: str | None
    detail: str | None  # the server's words
    address: str | None
    run: int
    position: int


def reports_about(connection: Connection, customer_id: str) -> list[ReportAbout]:
    """Every report tied to one of the customer's recipients, newest first."""
    outcome, recipient = table_of(RecipientOutcome), table_of(Recipient)
    rows = connection.execute(
        select(outcome, recipient.c.run_id, recipient.c.position)
        .select_from(outcome.join(recipient, recipient.c.id == outcome.c.recipient_id))
        .where(recipient.c.customer_id == customer_id, is_outcome(outcome))
        .order_by(outcome.c.reported_at.desc(), outcome.c.id.desc())
    ).all()
    return [
        ReportAbout(
            r.report_id,
            r.reported_at,
            outcome_name(r.type, r.bounce_class),
            r.status,
            r.detail,
            r.address,
            r.run_id,
            r.position,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class RecordedRecipient:
    """A run's recipient as the run recorded it: its decision, its delivery and its outcome."""

    detail: Delivery
    outcome: RecipientOutcomeView | None


def recorded_recipient(database: Database, run_id: int, position: int) -> RecordedRecipient:
    detail = recipient_detail(database, run_id, position)
    recipient = table_of(Recipient)
    with database.connect() as connection:
        recipient_id = connection.execute(
            select(recipient.c.id).where(
                recipient.c.run_id == run_id, recipient.c.position == position
            )
        ).scalar_one()
        outcome = of_recipients(connection, [recipient_id]).get(recipient_id)
    return RecordedRecipient(detail, outcome)


@dataclass(frozen=True)
class DrillDown:
    """The console's customer drill-down: when opened from a run's recipient, that recipient
    as the run recorded it; every report about the customer; then what a plan decides at
    ``report.at``."""

    report: CustomerReport
    reports: list[ReportAbout]
    recorded: RecordedRecipient | None = None


def drill_down(
    database: Database,
    customer_id: str,
    at: datetime,
    *,
    definition_id: str | None = None,
    recipient: tuple[int, int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> DrillDown:
    """``recipient``: (run id, position) of the run's recipient it was opened from."""
    recorded = recorded_recipient(database, *recipient) if recipient is not None else None
    report = customer_report(
        database, customer_id, at, definition_id=definition_id, environ=environ
    )
    with database.connect() as connection:
        reports = reports_about(connection, customer_id)
    return DrillDown(report, reports, recorded)
