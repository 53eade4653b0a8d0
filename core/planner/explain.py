"""The customer drill-down behind ``msgrun why``: everything stored about one
customer, and for each definition why each of its candidates is included,
deferred or excluded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from core.clock import format_instant
from core.planner.load import (
    PlanningError,
    load_definition,
    load_definitions,
    load_organisation,
)
from core.planner.plan import Plan, plan_definition
from core.planner.report import candidate_json
from core.storage.database import Database
from core.storage.models import (
    Address,
    BillingMethod,
    Contact,
    Customer,
    Document,
    History,
    Service,
    Suppression,
    Unsubscribe,
    table_of,
)
from core.vocabulary import ADDRESS_PREFERENCES, CONTACT_PREFERENCES, document_label


@dataclass
class CustomerReport:
    """One customer's stored data (as JSON-ready dicts) and its plans."""

    customer: dict[str, Any]
    at: datetime
    plans: list[Plan]
    # What became of every message to the customer, newest run first: read models
    # with ``as_json`` (``core.views.deliveries.Delivery``), filled in by the views.
    deliveries: list[Any] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "at": format_instant(self.at),
            "definitions": [
                {
                    "definition": plan.definition.id,
                    "name": plan.definition.name,
                    "kind": plan.definition.kind,
                    "address_key": plan.definition.address_key,
                    "summary": plan.summary.as_json(),
                    "candidates": [candidate_json(c, with_fix=True) for c in plan.candidates],
                    "warnings": list(plan.warnings),
                }
                for plan in self.plans
            ],
            "deliveries": [delivery.as_json() for delivery in self.deliveries],
        }


def explain_customer(
    database: Database,
    customer_id: str,
    at: datetime,
    *,
    definition_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> CustomerReport:
    with database.connect() as connection:
        organisation = load_organisation(connection)
        customer = customer_record(connection, customer_id)
        definitions = (
            [load_definition(connection, definition_id)]
            if definition_id is not None
            else load_definitions(connection)
        )
        plans = [
            plan_definition(
                connection, organisation, definition, at, customers=[customer_id], environ=environ
            )
            for definition in definitions
        ]
    return CustomerReport(customer=customer, at=at, plans=plans)


def _set_preferences(row: Any, names: tuple[str, ...]) -> dict[str, bool]:
    return {name: row[f"pref_{name}"] for name in names if row[f"pref_{name}"] is not None}


def customer_record(connection: Connection, customer_id: str) -> dict[str, Any]:
    """Everything stored about one customer, as plain JSON-ready data."""
    customer = table_of(Customer)
    row = connection.execute(select(customer).where(customer.c.id == customer_id)).first()
    if row is None:
        raise PlanningError(f"unknown customer {customer_id!r}")
    contact, address, suppression = table_of(Contact), table_of(Address), table_of(Suppression)
    contacts = list(
        connection.execute(
            select(contact)
            .where(contact.c.customer_id == customer_id)
            .order_by(contact.c.position, contact.c.id)
        ).mappings()
    )
    addresses = list(
        connection.execute(
            select(address)
            .where(address.c.contact_id.in_([c["id"] for c in contacts]))
            .order_by(address.c.contact_id, address.c.position)
        ).mappings()
    )
    lowers = sorted({a["address_lower"] for a in addresses})
    suppressions = {
        s["address_lower"]: s
        for s in connection.execute(
            select(suppression).where(suppression.c.address_lower.in_(lowers))
        ).mappings()
    }
    unsubscribe = table_of(Unsubscribe)
    unsubscribes: dict[tuple[str, str], list[dict[str, object]]] = {}
    for u in connection.execute(
        select(unsubscribe)
        .where(unsubscribe.c.customer_id == customer_id)
        .order_by(unsubscribe.c.at, unsubscribe.c.id)
    ).mappings():
        unsubscribes.setdefault((u["contact_id"], u["address_lower"]), []).append(
            {
                "preference": u["preference"],
                "kind": u["kind"],
                "at": u["at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "how": u["how"],
                "run": u["run_id"],
            }
        )
    contact_records = []
    for c in contacts:
        contact_records.append(
            {
                "id": c["id"],
                "name": c["name"],
                "allow_email": c["allow_email"],
                "preferences": _set_preferences(c, CONTACT_PREFERENCES),
                "addresses": [
                    {
                        "address": a["address"],
                        "key": a["key"],
                        "valid": a["problem"] is None,
                        "problem": a["problem"],
                        "preferences": _set_preferences(a, ADDRESS_PREFERENCES),
                        "suppression": (
                            {
                                "address": suppressions[a["address_lower"]]["address"],
                                "reason": suppressions[a["address_lower"]]["reason"],
                                "since": suppressions[a["address_lower"]]["since"].isoformat(),
                            }
                            if a["address_lower"] in suppressions
                            else None
                        ),
                        # Unsubscribes msgrun recorded (inbox.md), only when there are any.
                        **(
                            {"unsubscribes": unsubscribes[(c["id"], a["address_lower"])]}
                            if (c["id"], a["address_lower"]) in unsubscribes
                            else {}
                        ),
                    }
                    for a in addresses
                    if a["contact_id"] == c["id"]
                ],
            }
        )
    service, document, method, history = (
        table_of(Service),
        table_of(Document),
        table_of(BillingMethod),
        table_of(History),
    )
    services = [
        {"id": s.id, "status": s.status, "allow_billing_email": s.allow_billing_email}
        for s in connection.execute(
            select(service).where(service.c.customer_id == customer_id).order_by(service.c.id)
        )
    ]
    method_names = dict(connection.execute(select(method.c.id, method.c.name)).all())
    documents = [
        {
            "id": d.id,
            "kind": d.kind,
            "number": d.number,
            "label": document_label(d.number),
            "status": d.status,
            "service": d.service_id,
            "billing_method": d.billing_method_id,
            "billing_method_name": method_names.get(d.billing_method_id or ""),
            "due_date": d.due_date.isoformat() if d.due_date else None,
            "amount": d.amount,
            "currency": d.currency,
        }
        for d in connection.execute(
            select(document)
            .where(document.c.customer_id == customer_id)
            .order_by(document.c.kind, document.c.id)
        )
    ]
    entries = [
        {
            "definition": h.definition_id,
            "address": h.address,
            "document": h.document_id,
            "offset_days": h.offset_days,
            "at": format_instant(h.at),
            "run": h.run_id,
        }
        for h in connection.execute(
            select(history)
            .where(history.c.customer_id == customer_id)
            .order_by(history.c.at.desc(), history.c.id.desc())
        )
    ]
    return {
        "id": row.id,
        "name": row.name,
        "cluster": row.cluster,
        "timezone": row.timezone,
        "attributes": row.attributes or {},
        "contacts": contact_records,
        "services": services,
        "documents": documents,
        "history": entries,
    }
