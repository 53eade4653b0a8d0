"""Message composition: what a recipient's message is built from, and building it.

Public, so that the delivering process and the console's message view
(``core/views/message_preview.py``) build the same bytes, and the planner's
render check renders the same templates: ``templates_of`` reads a definition's
templates (``core.delivery.queries.run_settings``: a run's, with its SMTP
profile); ``message_contexts`` reads the customers, contacts and documents of a
batch in one query each; ``draft_of`` gathers what one recipient's message is
built from, and a ``Composer`` renders the templates and builds the message (in
whichever process sends it), with the envelope sender a VERP address
(``core.messages.verp``) when the profile has a ``bounce_address``, so that a
report delivered to it names its recipient. ``compose_message`` does both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from core.attachments.mime import Attacher
from core.attachments.specs import FileSpec, definition_specs, file_specs
from core.messages.attaching import attach
from core.messages.dkim_sign import DkimSigner
from core.messages.due import Due
from core.messages.message import Envelope, build_message
from core.messages.verp import verp_address, verp_token
from core.quiet_hours import QuietHours, zone
from core.smtp_profiles import ProfileSettings
from core.storage.models import (
    Definition,
    Organisation,
    table_of,
)
from core.storage.sql import date_text, json_value, rows_by_ids
from core.templating import render
from core.unsubscribe.records import offers_unsubscribe
from core.unsubscribe.tokens import database_secret, make_token
from core.vocabulary import document_label


@dataclass(frozen=True)
class Templates:
    """A definition's templates, and what its messages need besides."""

    definition_id: str
    subject: str
    text: str
    html: str | None
    organisation: dict[str, Any]
    # per_trigger definitions record their targets when the run is made, not each send.
    ledger: bool = True
    # The files its messages attach (attachments.md); None: none.
    attacher: Attacher | None = None
    # The definition's quiet hours, checked again as each message goes on the wire.
    quiet_hours: QuietHours | None = None
    kind: str = ""
    reply_to: str | None = None  # the definition's, which wins over the profile's
    # Where unsubscribe requests go, when the definition offers unsubscribe.
    unsubscribe: UnsubscribeForms | None = None


@dataclass(frozen=True)
class UnsubscribeForms:
    """The organisation's unsubscribe URL and address, and the database's token secret
    (in memory only, for the sender processes)."""

    url: str | None
    address: str | None
    secret: str

    def headers(self, token: str) -> tuple[tuple[str, str], ...]:
        """List-Unsubscribe (mailto, then https), and List-Unsubscribe-Post with the URL."""
        forms = []
        if self.address:
            local, _, domain = self.address.rpartition("@")
            forms.append(f"<mailto:{local}+{token}@{domain}>")
        if self.url:
            forms.append(f"<{self.url}{token}>")
        if not forms:
            return ()
        found = [("List-Unsubscribe", ", ".join(forms))]
        if self.url:
            found.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        return tuple(found)

    def link(self, token: str) -> str | None:
        """The template's ``unsubscribe_url``: the URL form, else the mailto form."""
        if self.url:
            return f"{self.url}{token}"
        if self.address:
            local, _, domain = self.address.rpartition("@")
            return f"mailto:{local}+{token}@{domain}"
        return None


Contexts = dict[str, dict[str, Any]]


def templates_of(connection: Connection, definition_id: str) -> Templates:
    """A definition's templates, as its runs render them (a plan checks them too)."""
    definition = connection.execute(
        select(table_of(Definition)).where(table_of(Definition).c.id == definition_id)
    ).one()
    organisation = connection.execute(select(table_of(Organisation))).one()
    forms = organisation.unsubscribe or {}
    unsubscribe = (
        UnsubscribeForms(forms.get("url"), forms.get("address"), database_secret(connection))
        if offers_unsubscribe(definition.kind, definition.unsubscribe)
        else None
    )
    return Templates(
        definition_id=definition.id,
        subject=definition.template_subject,
        text=definition.template_text,
        html=definition.template_html,
        organisation={"name": organisation.name, "timezone": organisation.timezone},
        ledger=definition.dedup != "per_trigger",
        attacher=_attacher(organisation, definition),
        quiet_hours=(
            QuietHours.parse(definition.quiet_start, definition.quiet_end)
            if definition.quiet_start is not None and definition.quiet_end is not None
            else None
        ),
        kind=definition.kind,
        reply_to=definition.reply_to,
        unsubscribe=unsubscribe,
    )


def _attacher(organisation: Any, definition: Any) -> Attacher | None:
    attacher = Attacher(
        organisation.documents_folder,
        bool(definition.attach_document_files),
        definition_specs(definition.attachment_files),
    )
    return attacher if attacher.attaching else None


def message_contexts(connection: Connection, due: Sequence[Due]) -> Contexts:
    """Customers, contacts and documents of a batch, each read in one query.

    A batch is up to a few thousand recipients, read ahead of sending: the rows
    come straight from the driver (``storage.sql.rows_by_ids``).
    """
    rows = rows_by_ids(
        connection,
        "SELECT id, name, cluster, attributes, timezone FROM customer",
        {d.customer_id for d in due},
    )
    customers = {
        row[0]: {
            "id": row[0],
            "name": row[1],
            "cluster": row[2],
            "attributes": json_value(row[3]) or {},
        }
        for row in rows
    }
    # A customer's own timezone (for quiet hours), not a template's variable.
    zones = {row[0]: row[4] for row in rows if row[4]}
    contacts = {
        row[0]: {"id": row[0], "name": row[1]}
        for row in rows_by_ids(
            connection, "SELECT id, name FROM contact", {d.contact_id for d in due if d.contact_id}
        )
    }
    documents: dict[str, dict[str, Any]] = {}
    files: dict[str, tuple[FileSpec, ...]] = {}  # a document's files, when it lists any
    for row in rows_by_ids(
        connection,
        "SELECT id, kind, number, status, due_date, amount, currency, files FROM document",
        {d.document_id for d in due if d.document_id},
    ):
        documents[row[0]] = {
            "id": row[0],
            "kind": row[1],
            "number": row[2],
            "label": document_label(row[2]),
            "status": row[3],
            "due_date": date_text(row[4]),
            "amount": row[5],
            "currency": row[6],
        }
        if row[7] is not None:
            files[row[0]] = file_specs(json_value(row[7]))
    return {
        "customers": customers,
        "contacts": contacts,
        "documents": documents,
        "zones": zones,
        "files": files,
    }


def envelope_sender(profile: ProfileSettings, run_id: int, position: int) -> str | None:
    """MAIL FROM for one recipient: the VERP address naming it when the profile has a
    bounce address, else None (the profile's from_address)."""
    if not profile.bounce_address:
        return None
    return verp_address(profile.bounce_address, verp_token(run_id, position))


@dataclass(frozen=True, slots=True)
class Draft:
    """What one recipient's message is built from: read from the database in the
    delivering process, built wherever the message is sent (``Composer``)."""

    position: int
    message_id: str
    address: str
    to_name: str | None
    values: dict[str, Any]  # the templates' variables
    files: tuple[FileSpec, ...] = ()  # its document's files (attachments.md)
    zone: str | None = None  # the customer's timezone (None: the organisation's)


def draft_of(due: Due, templates: Templates, context: Contexts) -> Draft:
    """A recipient's draft, from the contexts of its batch (``message_contexts``)."""
    contact = context["contacts"].get(due.contact_id or "", {"name": ""})
    values = {
        "organisation": templates.organisation,
        "customer": context["customers"].get(due.customer_id, {"id": due.customer_id}),
        "contact": contact,
        "address": due.address,
        "document": context["documents"].get(due.document_id or "") if due.document_id else None,
    }
    files = context.get("files", {}).get(due.document_id or "", ())
    return Draft(
        due.position,
        due.message_id,
        due.address,
        contact.get("name"),
        values,
        files,
        context.get("zones", {}).get(due.customer_id),
    )


@dataclass(frozen=True)
class Composer:
    """Builds a run's messages from drafts: the templates rendered, the bytes built, the
    envelope addressed. Needs no database, so a sender process builds them too."""

    run_id: int
    profile: ProfileSettings
    templates: Templates
    # The profile's DKIM signer (``smtp.dkim_signer``), when it signs.
    signer: DkimSigner | None = None

    def quiet_until(self, draft: Draft, at: datetime) -> datetime | None:
        """When the recipient's quiet hours in force at ``at`` end; None when they are
        not (or the definition has none)."""
        quiet = self.templates.quiet_hours
        if quiet is None:
            return None
        return quiet.send_after(at, zone(draft.zone or self.templates.organisation["timezone"]))

    def build(self, draft: Draft, now: datetime) -> Envelope:
        """RenderError when a template fails for this recipient, ValueError when an
        address cannot be used, FileProblem when a file it attaches cannot be."""
        profile, templates, values = self.profile, self.templates, draft.values
        values, unsubscribe = with_unsubscribe(templates, values, self.run_id, draft.position)
        extra = kind_headers(templates.kind) + unsubscribe
        envelope = build_message(
            from_address=profile.from_address,
            from_name=profile.from_name,
            to_address=draft.address,
            to_name=draft.to_name,
            subject=render(templates.subject, values),
            text=render(templates.text, values),
            html=render(templates.html, values, html=True) if templates.html else None,
            message_id=draft.message_id,
            date=now,
            envelope_sender=envelope_sender(profile, self.run_id, draft.position),
            reply_to=templates.reply_to or profile.reply_to,
            extra_headers=extra,
        )
        envelope = attach(envelope, templates.attacher, draft.files)
        if self.signer is None:
            return envelope
        return replace(envelope, data=self.signer.sign(envelope.data, now))


def with_unsubscribe(
    templates: Templates, values: dict[str, Any], run_id: int, position: int
) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
    """The values a message renders with, ``unsubscribe_url`` among them when its
    definition offers unsubscribe, and the List-Unsubscribe headers that go with it."""
    if templates.unsubscribe is None:
        return values, ()
    token = make_token(templates.unsubscribe.secret, run_id, position)
    link = templates.unsubscribe.link(token)
    return {**values, "unsubscribe_url": link}, templates.unsubscribe.headers(token)


def kind_headers(kind: str) -> tuple[tuple[str, str], ...]:
    """Headers a kind of message carries besides every message's (inbox.md): a broadcast
    is bulk mail; transactional kinds never say so."""
    return (("Precedence", "bulk"),) if kind == "broadcast" else ()


def compose_message(
    run_id: int,
    due: Due,
    profile: ProfileSettings,
    templates: Templates,
    context: Contexts,
    now: datetime,
) -> Envelope:
    """One recipient's message, as a delivery builds it (``draft_of``, then ``Composer``)."""
    return Composer(run_id, profile, templates).build(draft_of(due, templates, context), now)
