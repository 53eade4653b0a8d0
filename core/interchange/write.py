"""Writing the checked records of an import file: set-based upserts, a batch at a time.

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

from core.interchange.parse import Row
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


def write_customers(
    connection: Connection,
    customers: list[dict[str, Any]],
    contacts: list[dict[str, Any]],
    addresses: list[dict[str, Any]],
    services: list[dict[str, Any]],
) -> None:
    """Customers as written: their contacts and addresses replace the stored ones.

    Services a customer no longer lists are removed at the end of the import
    (``delete_services``), once no document of the file uses them.
    """
    upsert(connection, table_of(Customer), customers, ("id",))
    contact, address = table_of(Contact), table_of(Address)
    stored = stored_children(connection, contact, [row["id"] for row in customers])
    incoming = {row["id"] for row in contacts}
    # Every address of these contacts is rewritten from the file; contacts the
    # file's customers no longer list go (their addresses with them).
    for batch in chunks(sorted(stored.keys() | incoming)):
        connection.execute(delete(address).where(address.c.contact_id.in_(batch)))
    for batch in chunks(sorted(stored.keys() - incoming)):
        connection.execute(delete(contact).where(contact.c.id.in_(batch)))
    upsert(connection, contact, contacts, ("id",))
    upsert(connection, address, addresses, ("contact_id", "position"))
    upsert(connection, table_of(Service), services, ("id",))


def write_rows(connection: Connection, section: str, rows: list[dict[str, Any]]) -> None:
    """Rows of a top-level section other than customers, upserted (history: added once)."""
    if section == "history":
        insert_new(connection, table_of(History), rows, "fingerprint")
    elif section == "suppressions":
        upsert(connection, table_of(Suppression), rows, ("address_lower",))
    else:
        upsert(connection, TABLE_OF_SECTION[section], rows, ("id",))


def write_organisation(connection: Connection, organisation: dict[str, Any]) -> None:
    upsert(connection, table_of(Organisation), [organisation], ("id",))


def delete_services(connection: Connection, ids: list[str]) -> None:
    service = table_of(Service)
    for batch in chunks(sorted(ids)):
        connection.execute(delete(service).where(service.c.id.in_(batch)))


TABLE_OF_SECTION = {
    "smtp_profiles": table_of(SmtpProfile),
    "billing_methods": table_of(BillingMethod),
    "documents": table_of(Document),
    "definitions": table_of(Definition),
}
