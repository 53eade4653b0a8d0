"""The facts a plan is decided from, loaded in a few set-based queries.

Plain records: the planner reads them millions of times, so they carry
exactly what the rules need and nothing that would make a row an ORM object.
Those read a row per customer, address, document and service are named
tuples, made straight from the database's rows in the order of their fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from core.attachments.specs import FileSpec
from core.quiet_hours import QuietHours


@dataclass(slots=True, frozen=True)
class OrganisationFacts:
    name: str
    timezone: str
    sender_verified: bool
    toggles: dict[str, bool]
    default_address_preferences: dict[str, bool]
    default_contact_preferences: dict[str, bool]
    # The folder documents' files are read from (attachments.md), if any.
    documents_folder: str | None = None
    # Whether the organisation configures an unsubscribe URL or address (inbox.md).
    unsubscribe_configured: bool = False


@dataclass(slots=True, frozen=True)
class DefinitionFacts:
    id: str
    name: str
    kind: str
    document_kind: str | None
    address_key: str
    smtp_profile_id: str
    trigger_type: str
    trigger_cron: str | None
    trigger_event: str | None
    trigger_enabled: bool
    clusters: tuple[str, ...] | None
    document_statuses: tuple[str, ...] | None
    audience: tuple[dict[str, Any], ...] | None
    quiet_hours: QuietHours | None
    dedup: str
    use_billing_rules: bool
    # template.attachments: the document's files attached, and the definition's own.
    attach_document_files: bool = False
    attachment_files: tuple[FileSpec, ...] = ()
    # Whether its messages offer unsubscribe, and whether its templates use unsubscribe_url.
    offers_unsubscribe: bool = False
    uses_unsubscribe_url: bool = False


@dataclass(slots=True, frozen=True)
class ProfileFacts:
    id: str
    password_env: str | None
    last_test_ok_at: datetime | None
    max_message_bytes: int | None = None
    server_size: int | None = None
    # The environment variable that holds the DKIM key, when the profile signs with one.
    dkim_key_env: str | None = None
    # The last smtp test's dmarc step, when it failed: (when, its detail).
    failed_dmarc: tuple[datetime, str] | None = None


@dataclass(slots=True, frozen=True)
class MethodFacts:
    id: str
    name: str
    offsets: tuple[int, ...]
    statuses: tuple[str, ...] | None
    # The offsets as a person reads them ("-3, 0, +7"), for reason details.
    offsets_text: str


@dataclass(slots=True, frozen=True)
class SuppressionFacts:
    address: str
    reason: str
    since: date
    # When a report made it: the report, its run, and the server's words.
    report_id: int | None = None
    run_id: int | None = None
    detail: str | None = None

    def describe(self) -> str:
        """``hard_bounce since 2026-11-28, from a bounce report on run 7: 5.1.1 user unknown``"""
        text = f"{self.reason} since {self.since.isoformat()}"
        if self.report_id is not None:
            what = "a feedback report" if self.reason == "spam_complaint" else "a bounce report"
            text += f", from {what}"
            if self.run_id is not None:
                text += f" on run {self.run_id}"
            if self.detail:
                text += f": {self.detail}"
        return text


@dataclass(slots=True, frozen=True)
class HistoryFacts:
    customer_id: str
    address_lower: str | None
    document_id: str | None
    offset_days: int | None
    at: datetime
    run_id: int | None


class CustomerFacts(NamedTuple):
    id: str
    name: str
    cluster: str | None
    timezone: str | None
    # Read only when the definition names an audience (None otherwise).
    attributes: dict[str, Any] | None


class AddressFacts(NamedTuple):
    """An address under the definition's key, with its contact."""

    customer_id: str
    contact_id: str
    contact_name: str
    # Booleans as the database gives them (0 and 1 on SQLite): the rules test their truth.
    allow_email: bool
    # The one contact and one address preference this definition's kind needs
    # (None: unset, or the kind needs none).
    contact_preference: bool | None
    address: str
    address_lower: str
    problem: str | None
    address_preference: bool | None
    # The kind's preference turned off by an unsubscribe msgrun recorded (inbox.md): the
    # reason's detail, whatever the imported value says.
    unsubscribed: str | None = None


class ServiceFacts(NamedTuple):
    id: str
    status: str
    allow_billing_email: bool  # 0 or 1 on SQLite, as allow_email


class DocumentFacts(NamedTuple):
    id: str
    customer_id: str
    number: str | None
    status: str
    service_id: str | None
    billing_method_id: str | None
    due_date: date | None
    files: tuple[FileSpec, ...] = ()
