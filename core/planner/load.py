"""Loading what a plan needs: a handful of set-based queries, never one per candidate.

The fixed inputs (organisation, definition, billing methods, suppressions, the
definition's history) are read once. Customers are then read in pages by id
range; for each page one query each brings its addresses under the key (with
their contacts), its documents of the kind and its services.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, null, select

from core.addresses import fold
from core.attachments.specs import definition_specs, file_specs
from core.planner.facts import (
    AddressFacts,
    CustomerFacts,
    DefinitionFacts,
    DocumentFacts,
    HistoryFacts,
    MethodFacts,
    OrganisationFacts,
    ProfileFacts,
    ServiceFacts,
    SuppressionFacts,
)
from core.quiet_hours import QuietHours
from core.states import ENDED, HOLDS_ITS_MESSAGE
from core.storage.models import (
    Address,
    BillingMethod,
    Contact,
    Customer,
    Definition,
    Document,
    History,
    MessageRun,
    Organisation,
    Recipient,
    Service,
    SmtpProfile,
    Suppression,
    Unsubscribe,
    table_of,
)
from core.storage.sql import padded
from core.suggested import command
from core.unsubscribe.records import PREFERENCE_OF, offers_unsubscribe
from core.unsubscribe.records import detail as unsubscribe_detail
from core.vocabulary import ADDRESS_PREFERENCE_OF, CONTACT_PREFERENCE_OF, DOCUMENT_KIND_OF

PAGE = 5000


# Records made straight from a driver's row (a tuple in their fields' order).
_new = tuple.__new__


class PlanningError(LookupError):
    """A plan cannot be made: unknown definition or customer, or nothing imported yet."""


@dataclass(frozen=True)
class Customers:
    """The customers of one page: an id range, or (planning some customers only) their ids.

    Every query of the page reads by it, so a page's reads stay a page's size
    whether the plan takes every customer or a list of them.
    """

    low: str
    high: str
    ids: tuple[str, ...] | None = None

    def of(self, column: ColumnElement[Any]) -> ColumnElement[bool]:
        """The page's condition on a column that holds a customer id."""
        if self.ids is not None:  # a few sizes of statement only (``padded``)
            return column.in_(padded(self.ids))
        return column.between(self.low, self.high)


def load_organisation(connection: Connection) -> OrganisationFacts:
    row = connection.execute(select(table_of(Organisation))).first()
    if row is None:
        raise PlanningError(
            "the database has no organisation yet: import an interchange file first "
            f"({command('import FILE')})"
        )
    return OrganisationFacts(
        name=row.name,
        timezone=row.timezone,
        sender_verified=row.sender_verified,
        toggles={
            "auto_send_invoices": row.auto_send_invoices,
            "auto_send_payment_receipts": row.auto_send_payment_receipts,
            "auto_send_confirmations": row.auto_send_confirmations,
        },
        default_address_preferences=dict(row.default_address_preferences or {}),
        default_contact_preferences=dict(row.default_contact_preferences or {}),
        documents_folder=row.documents_folder,
        unsubscribe_configured=bool(row.unsubscribe),
    )


def definition_facts(row: Any) -> DefinitionFacts:
    quiet = None
    if row.quiet_start is not None and row.quiet_end is not None:
        quiet = QuietHours.parse(row.quiet_start, row.quiet_end)
    return DefinitionFacts(
        id=row.id,
        name=row.name,
        kind=row.kind,
        document_kind=DOCUMENT_KIND_OF[row.kind],
        address_key=row.address_key,
        smtp_profile_id=row.smtp_profile_id,
        trigger_type=row.trigger_type,
        trigger_cron=row.trigger_cron,
        trigger_event=row.trigger_event,
        trigger_enabled=row.trigger_enabled,
        clusters=tuple(row.clusters) if row.clusters is not None else None,
        document_statuses=(
            tuple(row.document_statuses) if row.document_statuses is not None else None
        ),
        audience=tuple(row.audience) if row.audience is not None else None,
        quiet_hours=quiet,
        dedup=row.dedup,
        use_billing_rules=row.use_billing_rules,
        attach_document_files=bool(row.attach_document_files),
        attachment_files=definition_specs(row.attachment_files),
        offers_unsubscribe=offers_unsubscribe(row.kind, row.unsubscribe),
        uses_unsubscribe_url=any(
            "unsubscribe_url" in (source or "")
            for source in (row.template_subject, row.template_text, row.template_html)
        ),
    )


def load_definition(connection: Connection, definition_id: str) -> DefinitionFacts:
    definitions = table_of(Definition)
    row = connection.execute(select(definitions).where(definitions.c.id == definition_id)).first()
    if row is None:
        known = connection.execute(select(definitions.c.id).order_by(definitions.c.id)).scalars()
        names = ", ".join(known) or "none yet"
        raise PlanningError(f"unknown definition {definition_id!r} (definitions: {names})")
    return definition_facts(row)


def load_definitions(connection: Connection) -> list[DefinitionFacts]:
    definitions = table_of(Definition)
    rows = connection.execute(select(definitions).order_by(definitions.c.id))
    return [definition_facts(row) for row in rows]


def load_profile(connection: Connection, profile_id: str) -> ProfileFacts:
    profiles = table_of(SmtpProfile)
    row = connection.execute(
        select(
            profiles.c.id,
            profiles.c.password_env,
            profiles.c.last_test_ok_at,
            profiles.c.max_message_bytes,
            profiles.c.server_size,
            profiles.c.dkim,
            profiles.c.last_sender_auth,
        ).where(profiles.c.id == profile_id)
    ).one()
    return ProfileFacts(
        id=row.id,
        password_env=row.password_env,
        last_test_ok_at=row.last_test_ok_at,
        max_message_bytes=row.max_message_bytes,
        server_size=row.server_size,
        dkim_key_env=(row.dkim or {}).get("private_key_env"),
        failed_dmarc=failed_dmarc(row.last_sender_auth),
    )


def failed_dmarc(last: dict[str, Any] | None) -> tuple[datetime, str] | None:
    """When the profile's last smtp test failed its dmarc step, and what it said."""
    if not last:
        return None
    for step in last.get("steps", []):
        if step.get("name") == "dmarc" and not step.get("ok"):
            return datetime.fromisoformat(last["at"]), str(step.get("detail", ""))
    return None


def load_methods(connection: Connection) -> dict[str, MethodFacts]:
    methods = table_of(BillingMethod)
    return {
        row.id: MethodFacts(
            id=row.id,
            name=row.name,
            offsets=tuple(row.send_rule_offsets or ()),
            offsets_text=", ".join(
                f"{days:+d}" if days else "0" for days in row.send_rule_offsets or ()
            ),
            statuses=(
                tuple(row.service_statuses_for_sending)
                if row.service_statuses_for_sending is not None
                else None
            ),
        )
        for row in connection.execute(select(methods))
    }


def load_suppressions(connection: Connection) -> dict[str, SuppressionFacts]:
    suppressions = table_of(Suppression)
    return {
        row.address_lower: SuppressionFacts(
            address=row.address,
            reason=row.reason,
            since=row.since,
            report_id=row.report_id,
            run_id=row.run_id,
            detail=row.detail,
        )
        for row in connection.execute(select(suppressions))
    }


def load_history(
    connection: Connection, definition: DefinitionFacts, which: Customers | None = None
) -> list[HistoryFacts]:
    """The definition's history that can decide rules 16 and 17, newest first.

    ``which``: for one page of customers only. Rule 17 matches history by
    customer, rule 16 by document (an entry names the customer it was sent
    for, but what it deduplicates is the document: the page's documents' entries
    are read), and a kind without documents by address, whoever's (every entry
    without a document is read).
    """
    history, document = table_of(History), table_of(Document)
    query = select(
        history.c.customer_id,
        history.c.address_lower,
        history.c.document_id,
        history.c.offset_days,
        history.c.at,
        history.c.run_id,
    ).where(history.c.definition_id == definition.id)
    if which is not None:
        if definition.dedup == "per_trigger":
            query = query.where(which.of(history.c.customer_id))
        elif definition.document_kind is None:
            query = query.where(history.c.document_id.is_(None))
        else:
            documents = select(document.c.id).where(
                which.of(document.c.customer_id), document.c.kind == definition.document_kind
            )
            query = query.where(history.c.document_id.in_(documents))
    query = query.order_by(history.c.at.desc(), history.c.id.desc())
    return [
        HistoryFacts(
            customer_id=row.customer_id,
            address_lower=row.address_lower,
            document_id=row.document_id,
            offset_days=row.offset_days,
            at=row.at,
            run_id=row.run_id,
        )
        for row in connection.execute(query)
    ]


def has_history(connection: Connection, definition: DefinitionFacts) -> bool:
    """Whether the definition has any history at all (else rules 16 and 17 cannot fail)."""
    history = table_of(History)
    found = connection.execute(
        select(history.c.id).where(history.c.definition_id == definition.id).limit(1)
    ).first()
    return found is not None


def unended_runs(connection: Connection, definition: DefinitionFacts) -> list[int]:
    """The runs of the definition that have not ended (rule 18 asks what they hold)."""
    if definition.dedup not in ("per_document", "per_trigger"):
        return []
    run = table_of(MessageRun)
    query = select(run.c.id).where(run.c.definition_id == definition.id, run.c.state.notin_(ENDED))
    return list(connection.execute(query.order_by(run.c.id)).scalars())


def load_held_by_runs(
    connection: Connection,
    definition: DefinitionFacts,
    runs: Sequence[int],
    which: Customers | None = None,
) -> dict[tuple[str | None, str | None], int]:
    """Rule 18: what ``runs`` (``unended_runs``) still hold, for one page of customers
    (``which``) or all.

    (document id, lower-cased address) for ``per_document``, (customer id,
    None) for ``per_trigger``, each to the lowest run id holding it as
    pending, held, sending, retrying or unknown.
    """
    if not runs or definition.dedup not in ("per_document", "per_trigger"):
        return {}
    recipient = table_of(Recipient)
    query = (
        select(
            recipient.c.run_id,
            recipient.c.customer_id,
            recipient.c.document_id,
            recipient.c.address,
        )
        .where(recipient.c.run_id.in_(list(runs)), recipient.c.state.in_(HOLDS_ITS_MESSAGE))
        .order_by(recipient.c.run_id.desc())
    )
    if which is not None:
        query = query.where(which.of(recipient.c.customer_id))
    held: dict[tuple[str | None, str | None], int] = {}
    for row in connection.execute(query):  # newest run first: the oldest one wins
        if definition.dedup == "per_trigger":
            held[(row.customer_id, None)] = row.run_id
        elif row.address is not None:
            held[(row.document_id, fold(row.address))] = row.run_id
    return held


@dataclass
class Page:
    """One page of customers and everything of theirs the plan needs."""

    customers: list[CustomerFacts]
    addresses: dict[str, list[AddressFacts]]
    documents: dict[str, list[DocumentFacts]]
    services: dict[str, ServiceFacts]
    which: Customers


def driver_rows(connection: Connection, query: Select[Any]) -> Sequence[Any]:
    """The rows of ``query`` as the database driver gives them.

    Plain tuples, without SQLAlchemy's row objects and type processing: a
    plan reads a row per customer, address, document and service, and that
    processing cost as much as the reading. Values are the driver's own:
    on SQLite, booleans are 0 and 1, dates ISO text and JSON text.
    """
    result = connection.execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _json(value: Any) -> Any:
    """A JSON column's value: text on SQLite, already decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def iter_pages(
    connection: Connection,
    definition: DefinitionFacts,
    only: Sequence[str] | None = None,
    page_size: int | None = None,
) -> Iterator[Page]:
    """Customers in id order, a page at a time, with their addresses, documents, services.

    ``only``: these customers alone, still a page at a time (a follow-up of a
    million recipients plans a million customers again). ``page_size``: ``PAGE``.
    """
    page_size = page_size or PAGE
    customer = table_of(Customer)
    attributes: ColumnElement[Any] = (
        customer.c.attributes if definition.audience else null().label("attributes")
    )
    columns = (customer.c.id, customer.c.name, customer.c.cluster, customer.c.timezone, attributes)
    days: dict[Any, date] = {}  # due dates as the driver gives them, read once
    chunks: Iterator[tuple[str, ...]] | None = None
    if only is not None:
        wanted = sorted(set(only))  # the ids' order is the database's (C collation)
        chunks = (
            tuple(wanted[start : start + page_size]) for start in range(0, len(wanted), page_size)
        )
    after: str | None = None
    while True:
        query = select(*columns).order_by(customer.c.id)
        chunk: tuple[str, ...] | None = None
        if chunks is not None:
            chunk = next(chunks, None)
            if chunk is None:
                return
            query = query.where(customer.c.id.in_(padded(chunk)))
        else:
            if after is not None:
                query = query.where(customer.c.id > after)
            query = query.limit(page_size)
        rows = driver_rows(connection, query)
        if not rows:
            if chunks is not None:
                continue
            return
        customers = (
            [CustomerFacts(row[0], row[1], row[2], row[3], _json(row[4]) or {}) for row in rows]
            if definition.audience
            else [_new(CustomerFacts, row) for row in rows]
        )
        which = Customers(customers[0].id, customers[-1].id, chunk)
        yield Page(
            customers=customers,
            addresses=_addresses(connection, definition, which),
            documents=_documents(connection, definition, which, days),
            services=_services(connection, definition, which),
            which=which,
        )
        if chunks is None:
            if len(customers) < page_size:
                return
            after = which.high


def _addresses(
    connection: Connection, definition: DefinitionFacts, which: Customers
) -> dict[str, list[AddressFacts]]:
    contact, address = table_of(Contact), table_of(Address)
    contact_preference = CONTACT_PREFERENCE_OF.get(definition.kind)
    address_preference = ADDRESS_PREFERENCE_OF.get(definition.kind)
    query = (
        select(  # AddressFacts' fields, in order
            contact.c.customer_id,
            contact.c.id,
            contact.c.name,
            contact.c.allow_email,
            (
                contact.c[f"pref_{contact_preference}"]
                if contact_preference
                else null().label("contact_preference")
            ),
            address.c.address,
            address.c.address_lower,
            address.c.problem,
            (
                address.c[f"pref_{address_preference}"]
                if address_preference
                else null().label("address_preference")
            ),
            null().label("unsubscribed"),
        )
        .select_from(address.join(contact, address.c.contact_id == contact.c.id))
        .where(which.of(address.c.customer_id))
        .where(address.c.key == definition.address_key)
    )
    unsubscribed = _unsubscribed(connection, definition, which)
    found: dict[str, list[AddressFacts]] = {}
    for row in driver_rows(connection, query):
        facts = _new(AddressFacts, row)
        if unsubscribed:
            said = unsubscribed.get((facts.contact_id, facts.address_lower)) or unsubscribed.get(
                (facts.contact_id, "")
            )
            if said is not None:
                facts = facts._replace(unsubscribed=said)
        listed = found.get(facts.customer_id)
        if listed is None:
            found[facts.customer_id] = [facts]
        else:
            listed.append(facts)
    return found


def _unsubscribed(
    connection: Connection, definition: DefinitionFacts, which: Customers
) -> dict[tuple[str, str], str]:
    """The unsubscribes of the kind's preference among these customers: (contact, address
    lower) for an address preference, (contact, "") for a contact's → the detail."""
    if definition.kind not in PREFERENCE_OF:
        return {}
    whose, preference = PREFERENCE_OF[definition.kind]
    table = table_of(Unsubscribe)
    rows = connection.execute(
        select(table.c.contact_id, table.c.address_lower, table.c.at, table.c.how, table.c.run_id)
        .where(which.of(table.c.customer_id), table.c.preference == preference)
        .order_by(table.c.at)
    ).all()
    found: dict[tuple[str, str], str] = {}
    for row in rows:
        key = (row.contact_id, row.address_lower if whose == "address" else "")
        found.setdefault(key, unsubscribe_detail(preference, row.at, row.how, row.run_id))
    return found


def _documents(
    connection: Connection,
    definition: DefinitionFacts,
    which: Customers,
    days: dict[Any, date],
) -> dict[str, list[DocumentFacts]]:
    """The page's documents of the kind, by customer. ``days``: the due dates read so
    far, as the driver gives them (text on SQLite), to the date each is."""
    if definition.document_kind is None:
        return {}
    document = table_of(Document)
    query = select(
        document.c.id,
        document.c.customer_id,
        document.c.number,
        document.c.status,
        document.c.service_id,
        document.c.billing_method_id,
        document.c.due_date,
        document.c.files if definition.attach_document_files else null().label("files"),
    ).where(
        which.of(document.c.customer_id),
        document.c.kind == definition.document_kind,
    )
    found: dict[str, list[DocumentFacts]] = {}
    # `files` is None, or JSON's null as SQLite keeps it (text), when the document lists none.
    for row in driver_rows(connection, query):
        due, files = row[6], row[7]
        day = days.get(due)
        if day is None and due is not None:
            day = days[due] = due if isinstance(due, date) else date.fromisoformat(due)
        facts: DocumentFacts = _new(
            DocumentFacts,
            (
                *row[:6],
                day,
                () if files is None or files == "null" else file_specs(_json(files)),
            ),
        )
        listed = found.get(facts.customer_id)
        if listed is None:
            found[facts.customer_id] = [facts]
        else:
            listed.append(facts)
    return found


def _services(
    connection: Connection, definition: DefinitionFacts, which: Customers
) -> dict[str, ServiceFacts]:
    if definition.document_kind is None:
        return {}
    service = table_of(Service)
    query = select(service.c.id, service.c.status, service.c.allow_billing_email).where(
        which.of(service.c.customer_id)
    )
    return {row[0]: _new(ServiceFacts, row) for row in driver_rows(connection, query)}


def address_keys(connection: Connection, customer_ids: Sequence[str]) -> dict[str, list[str]]:
    """The keys each customer has addresses under (for the detail of rule 3)."""
    if not customer_ids:
        return {}
    address = table_of(Address)
    query = (
        select(address.c.customer_id, address.c.key)
        .where(address.c.customer_id.in_(list(customer_ids)))
        .distinct()
    )
    keys: dict[str, set[str]] = {}
    for customer_id, key in connection.execute(query):
        keys.setdefault(customer_id, set()).add(key)
    return {customer_id: sorted(found) for customer_id, found in keys.items()}


__all__ = [
    "Customers",
    "Page",
    "PlanningError",
    "address_keys",
    "has_history",
    "iter_pages",
    "load_definition",
    "load_definitions",
    "load_history",
    "load_methods",
    "load_organisation",
    "load_profile",
    "load_suppressions",
    "unended_runs",
]
