"""What an unsubscribe turns off, and the records of it (inbox.md, What an unsubscribe
does): exactly the preference the kind of the run's definition needs — a contact's for
broadcasts and reminders, an address's for status updates and confirmations — kept as
msgrun's own record, applied by the planner on top of the imported preferences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select

from core.storage.models import (
    Definition,
    MessageRun,
    Organisation,
    Recipient,
    Unsubscribe,
    table_of,
)
from core.unsubscribe.tokens import database_secret, read_token

# kind → (whose preference, which): an unsubscribe turns it off (exclude_from_broadcasts on).
PREFERENCE_OF = {
    "broadcast": ("contact", "exclude_from_broadcasts"),
    "service_reminder": ("contact", "send_service_reminders"),
    "invoice_reminder": ("contact", "send_invoice_reminders"),
    "status_update": ("address", "status_updates"),
    "confirmation": ("address", "confirmations"),
}
# Kinds that always offer unsubscribe, and kinds that never may.
ALWAYS = ("broadcast", "service_reminder")
NEVER = ("invoice", "payment_receipt", "job_sheet")
HOW = ("one_click", "mailto", "feedback_report")
HOW_SAID = {"one_click": "one-click", "mailto": "mailto", "feedback_report": "feedback report"}


def offers_unsubscribe(kind: str, unsubscribe: bool | None) -> bool:
    return kind in ALWAYS or (kind in PREFERENCE_OF and bool(unsubscribe))


@dataclass(frozen=True)
class Target:
    """Whom a token names, and what kind of message carried it."""

    run_id: int
    position: int
    address: str
    customer_id: str
    contact_id: str
    kind: str
    organisation: str


def target_of(connection: Connection, token: str) -> Target | None:
    """The recipient a token names, or None when it does not verify or names nobody."""
    found = read_token(database_secret(connection), token)
    if found is None:
        return None
    run_id, position = found
    recipient, run, definition = table_of(Recipient), table_of(MessageRun), table_of(Definition)
    row = connection.execute(
        select(
            recipient.c.address, recipient.c.customer_id, recipient.c.contact_id, definition.c.kind
        )
        .select_from(
            recipient.join(run, run.c.id == recipient.c.run_id).join(
                definition, definition.c.id == run.c.definition_id
            )
        )
        .where(recipient.c.run_id == run_id, recipient.c.position == position)
    ).first()
    if row is None or row.address is None or row.contact_id is None:
        return None
    name = connection.execute(select(table_of(Organisation).c.name)).scalar() or ""
    return Target(run_id, position, row.address, row.customer_id, row.contact_id, row.kind, name)


def record(connection: Connection, target: Target, how: str, at: datetime) -> bool:
    """Record the unsubscribe; False when the kind offers none (transactional). Recording
    the same unsubscribe twice changes nothing."""
    if target.kind not in PREFERENCE_OF:
        return False
    whose, preference = PREFERENCE_OF[target.kind]
    table = table_of(Unsubscribe)
    same = select(table.c.id).where(
        table.c.contact_id == target.contact_id, table.c.preference == preference
    )
    if whose == "address":
        same = same.where(table.c.address_lower == target.address.lower())
    if connection.execute(same).first() is None:
        connection.execute(
            table.insert().values(
                address=target.address,
                address_lower=target.address.lower(),
                customer_id=target.customer_id,
                contact_id=target.contact_id,
                preference=preference,
                kind=target.kind,
                at=at,
                how=how,
                run_id=target.run_id,
                position=target.position,
            )
        )
    return True


def detail(preference: str, at: datetime, how: str, run_id: int) -> str:
    """ "exclude_from_broadcasts: unsubscribed on 2026-12-05 14:02 UTC (one-click, from run 7)"."""
    return (
        f"{preference}: unsubscribed on {at.strftime('%Y-%m-%d %H:%M')} UTC "
        f"({HOW_SAID.get(how, how)}, from run {run_id})"
    )


def listed(connection: Connection) -> list[dict[str, object]]:
    """Every record, oldest first, as ``unsubscribes list --json`` gives them."""
    table = table_of(Unsubscribe)
    rows = connection.execute(select(table).order_by(table.c.at, table.c.id)).all()
    return [
        {
            "address": row.address,
            "customer": row.customer_id,
            "contact": row.contact_id,
            "preference": row.preference,
            "kind": row.kind,
            "at": row.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "how": row.how,
            "run": row.run_id,
            "recipient": row.position,
        }
        for row in rows
    ]


def lift(connection: Connection, address: str, kind: str | None = None) -> int:
    """Remove every record naming the address (of that kind only, when given)."""
    table = table_of(Unsubscribe)
    statement = delete(table).where(table.c.address_lower == address.strip().lower())
    if kind is not None:
        statement = statement.where(table.c.kind == kind)
    return int(connection.execute(statement).rowcount or 0)


def forget_all(connection: Connection) -> None:
    """Delete every record (the organisation replaced)."""
    connection.execute(delete(table_of(Unsubscribe)))
