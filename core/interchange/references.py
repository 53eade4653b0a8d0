"""References of an import file to things "in the file or already stored".

Run inside the import's transaction, before anything is written, so that a
file with a dangling reference is rejected whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Column, Connection, Table, select

from core.interchange.parse import ParsedFile, Row
from core.interchange.reader import Problem, join
from core.storage.models import (
    BillingMethod,
    Customer,
    Definition,
    Document,
    Service,
    SmtpProfile,
    table_of,
)

CHUNK = 500


def chunks(values: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def stored_ids(connection: Connection, table: Table, wanted: Iterable[str]) -> set[str]:
    """Which of ``wanted`` ids exist in ``table``."""
    id_column: Column[str] = table.c.id
    found: set[str] = set()
    for batch in chunks(sorted(set(wanted))):
        found.update(connection.execute(select(id_column).where(id_column.in_(batch))).scalars())
    return found


def stored_children(connection: Connection, table: Table, parents: Iterable[str]) -> dict[str, str]:
    """id → customer_id of the rows of ``table`` that belong to ``parents``."""
    owner: dict[str, str] = {}
    for batch in chunks(sorted(set(parents))):
        rows = connection.execute(
            select(table.c.id, table.c.customer_id).where(table.c.customer_id.in_(batch))
        )
        owner.update({row.id: row.customer_id for row in rows})
    return owner


def check_references(connection: Connection, parsed: ParsedFile) -> list[Problem]:
    problems: list[Problem] = []

    def resolve(
        rows: list[Row], column: str, key: str, noun: str, in_file: set[str], table: Table
    ) -> None:
        wanted = {
            row.values[column]
            for row in rows
            if row.values.get(column) is not None and row.values[column] not in in_file
        }
        known = in_file | stored_ids(connection, table, wanted)
        for row in rows:
            target = row.values.get(column)
            if target is not None and target not in known:
                problems.append(
                    Problem(
                        join(row.path, key),
                        f"refers to {noun} {target!r}, which is neither in the file nor stored",
                    )
                )

    def ids(rows: list[Row]) -> set[str]:
        return {row.values["id"] for row in rows if row.values.get("id") is not None}

    customer_ids = ids(parsed.customers)
    document_ids = ids(parsed.documents)
    resolve(
        parsed.documents, "customer_id", "customer", "customer", customer_ids, table_of(Customer)
    )
    resolve(
        parsed.documents,
        "billing_method_id",
        "billing_method",
        "billing method",
        ids(parsed.billing_methods),
        table_of(BillingMethod),
    )
    resolve(
        parsed.definitions,
        "smtp_profile_id",
        "smtp_profile",
        "SMTP profile",
        ids(parsed.smtp_profiles),
        table_of(SmtpProfile),
    )
    resolve(
        parsed.history,
        "definition_id",
        "definition",
        "definition",
        ids(parsed.definitions),
        table_of(Definition),
    )
    resolve(parsed.history, "customer_id", "customer", "customer", customer_ids, table_of(Customer))
    resolve(parsed.history, "document_id", "document", "document", document_ids, table_of(Document))
    problems.extend(_check_services(connection, parsed, customer_ids))
    return problems


def _check_services(
    connection: Connection, parsed: ParsedFile, customer_ids: set[str]
) -> list[Problem]:
    """A document's service must exist after the import and belong to its customer.

    A customer in the file is stored as written, so a service it no longer
    lists is removed; that is refused while a stored document still uses it.
    """
    problems: list[Problem] = []
    # Where each service will belong after the import.
    owner = stored_children(connection, table_of(Service), customer_ids)
    listed = {
        row.values["id"]: row.values["customer_id"]
        for row in parsed.services
        if row.values.get("id") is not None
    }
    removed = {service for service, customer in owner.items() if service not in listed}
    referenced = {
        row.values["service_id"]
        for row in parsed.documents
        if row.values.get("service_id") is not None
    }
    outside = referenced - listed.keys() - owner.keys()
    for batch in chunks(sorted(outside)):
        table = table_of(Service)
        rows = connection.execute(
            select(table.c.id, table.c.customer_id).where(table.c.id.in_(batch))
        )
        owner.update({row.id: row.customer_id for row in rows})
    final_owner = {
        service: customer for service, customer in owner.items() if service not in removed
    }
    final_owner.update(listed)

    for row in parsed.documents:
        service = row.values.get("service_id")
        if service is None:
            continue
        if service not in final_owner:
            problems.append(
                Problem(
                    join(row.path, "service"),
                    f"refers to service {service!r}, which is neither in the file nor stored",
                )
            )
        elif (
            (customer := row.values.get("customer_id")) is not None
            # None: the service's customer has no usable id, a problem said at its path.
            and final_owner[service] is not None
            and final_owner[service] != customer
        ):
            problems.append(
                Problem(
                    join(row.path, "service"),
                    f"service {service!r} belongs to customer {final_owner[service]!r}, "
                    f"not to {customer!r}",
                )
            )

    if removed:
        in_file_documents = {row.values.get("id") for row in parsed.documents}
        document = table_of(Document)
        paths = {row.values["id"]: row.path for row in parsed.customers if row.values.get("id")}
        for batch in chunks(sorted(removed)):
            rows = connection.execute(
                select(document.c.id, document.c.service_id).where(document.c.service_id.in_(batch))
            )
            for user in rows:
                if user.id in in_file_documents:
                    continue  # the file re-points (or keeps) this document itself
                customer = owner[user.service_id]
                problems.append(
                    Problem(
                        join(paths.get(customer, "customers"), "services"),
                        f"no longer lists service {user.service_id!r}, which stored document "
                        f"{user.id!r} still uses",
                    )
                )
    return problems


__all__ = ["check_references", "chunks", "stored_children", "stored_ids"]
