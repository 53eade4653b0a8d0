"""Writing a checked import file: one transaction of set-based upserts.

What an entity in the file means:
- organisation, SMTP profiles, billing methods, customers, documents,
  definitions and suppressions are upserted by id (suppressions by address,
  whatever its case); what the file does not name is left as it is;
- a customer is stored as written: its contacts, addresses and services are
  exactly those of the file (addresses have no ids: a contact's list replaces
  the stored one);
- a history entry is stored once, however often it is imported.
Importing the same file twice therefore changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Table, delete

from core.interchange.parse import ParsedFile, Row
from core.interchange.references import chunks, stored_children
from core.storage.models import (
    Address,
    BillingMethod,
    Contact,
    Customer,
    Definition,
    Document,
    History,
    Organisation,
    Service,
    SmtpProfile,
    Suppression,
    table_of,
)
from core.storage.sql import dialect_insert, insert_ignoring

Progress = Callable[[str, int, int], None]
BATCH = 2000


def _insert(connection: Connection, table: Table) -> Any:
    return dialect_insert(connection, table)


def upsert(
    connection: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    keys: tuple[str, ...],
    progress: Progress | None = None,
    label: str = "",
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE the given columns, in batches."""
    if not rows:
        return
    statement = _insert(connection, table)
    columns = [name for name in rows[0] if name not in keys]
    if columns:
        statement = statement.on_conflict_do_update(
            index_elements=list(keys),
            set_={name: statement.excluded[name] for name in columns},
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    for done, batch in enumerate(chunks(rows, BATCH), start=1):
        connection.execute(statement, batch)
        if progress is not None:
            progress(f"writing {label or table.name}", min(done * BATCH, len(rows)), len(rows))


def insert_new(connection: Connection, table: Table, rows: list[dict[str, Any]], key: str) -> None:
    """INSERT what is not stored yet (ON CONFLICT (key) DO NOTHING)."""
    if not rows:
        return
    statement = insert_ignoring(connection, table, key)
    for batch in chunks(rows, BATCH):
        connection.execute(statement, batch)


def values(rows: list[Row]) -> list[dict[str, Any]]:
    return [row.values for row in rows]


def write(connection: Connection, parsed: ParsedFile, progress: Progress | None = None) -> None:
    if parsed.organisation is not None:
        upsert(connection, table_of(Organisation), [parsed.organisation], ("id",))
    upsert(connection, table_of(SmtpProfile), values(parsed.smtp_profiles), ("id",))
    upsert(connection, table_of(BillingMethod), values(parsed.billing_methods), ("id",))
    upsert(connection, table_of(Customer), values(parsed.customers), ("id",), progress, "customers")
    _replace_contacts(connection, parsed, progress)

    services = values(parsed.services)
    upsert(connection, table_of(Service), services, ("id",), progress, "services")
    upsert(connection, table_of(Document), values(parsed.documents), ("id",), progress, "documents")
    # Services a customer in the file no longer lists go, now that no document uses them.
    customer_ids = [row.values["id"] for row in parsed.customers]
    keep = {row["id"] for row in services}
    stale = [
        s for s in stored_children(connection, table_of(Service), customer_ids) if s not in keep
    ]
    service = table_of(Service)
    for batch in chunks(stale):
        connection.execute(delete(service).where(service.c.id.in_(batch)))

    upsert(connection, table_of(Suppression), values(parsed.suppressions), ("address_lower",))
    upsert(connection, table_of(Definition), values(parsed.definitions), ("id",))
    insert_new(connection, table_of(History), values(parsed.history), "fingerprint")


def _replace_contacts(
    connection: Connection, parsed: ParsedFile, progress: Progress | None
) -> None:
    contact, address = table_of(Contact), table_of(Address)
    customer_ids = [row.values["id"] for row in parsed.customers]
    stored = stored_children(connection, contact, customer_ids)
    incoming = {row.values["id"] for row in parsed.contacts}
    # Every address of these contacts is rewritten from the file; contacts the
    # file's customers no longer list go (their addresses with them).
    for batch in chunks(sorted(stored.keys() | incoming)):
        connection.execute(delete(address).where(address.c.contact_id.in_(batch)))
    for batch in chunks(sorted(stored.keys() - incoming)):
        connection.execute(delete(contact).where(contact.c.id.in_(batch)))
    upsert(connection, contact, values(parsed.contacts), ("id",), progress, "contacts")
    upsert(
        connection,
        address,
        values(parsed.addresses),
        ("contact_id", "position"),
        progress,
        "addresses",
    )
