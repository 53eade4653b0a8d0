"""The closed vocabularies of the contract (interchange.md, reasons.md) in one place."""

from __future__ import annotations

from typing import Final

FORMAT: Final = "msgrun/1"

DOCUMENT_KINDS: Final = ("invoice", "job_sheet", "payment_receipt", "confirmation", "quote")
DEFINITION_KINDS: Final = (
    "invoice",
    "invoice_reminder",
    "job_sheet",
    "payment_receipt",
    "confirmation",
    "status_update",
    "service_reminder",
    "broadcast",
)
DOCUMENT_STATUSES: Final = ("concept", "approved", "sent", "paid", "overdue", "void")
SERVICE_STATUSES: Final = ("active", "suspended", "inactive", "cancelled")
SECURITY_MODES: Final = ("none", "starttls", "tls")
TRIGGER_TYPES: Final = ("manual", "routine", "event")
DEDUP_POLICIES: Final = ("none", "per_document", "per_trigger")
SUPPRESSION_REASONS: Final = ("spam_complaint", "hard_bounce", "unsubscribed", "manual")

# Address-level email preferences, and contact-level communication preferences.
ADDRESS_PREFERENCES: Final = ("invoices", "payment_receipts", "confirmations", "status_updates")
CONTACT_PREFERENCES: Final = (
    "send_invoice_reminders",
    "send_service_reminders",
    "email_confirmations_all_jobs",
    "exclude_from_broadcasts",
)
# The permissive value of each contact preference (what an unset one means when
# the organisation sets no default either).
CONTACT_PREFERENCE_PERMISSIVE: Final[dict[str, bool]] = {
    "send_invoice_reminders": True,
    "send_service_reminders": True,
    "email_confirmations_all_jobs": True,
    "exclude_from_broadcasts": False,
}

# Which documents a definition kind plans over (None: addresses alone).
DOCUMENT_KIND_OF: Final[dict[str, str | None]] = {
    "invoice": "invoice",
    "invoice_reminder": "invoice",
    "job_sheet": "job_sheet",
    "payment_receipt": "payment_receipt",
    "confirmation": "confirmation",
    "status_update": None,
    "service_reminder": None,
    "broadcast": None,
}
# Rule 2: the organisation's outbound toggle for a kind.
OUTBOUND_TOGGLE_OF: Final[dict[str, str]] = {
    "invoice": "auto_send_invoices",
    "payment_receipt": "auto_send_payment_receipts",
    "confirmation": "auto_send_confirmations",
}
# Rule 7: the address preference a kind needs.
ADDRESS_PREFERENCE_OF: Final[dict[str, str]] = {
    "invoice": "invoices",
    "invoice_reminder": "invoices",
    "payment_receipt": "payment_receipts",
    "confirmation": "confirmations",
    "status_update": "status_updates",
}
# Rule 8: the contact preference a kind needs.
CONTACT_PREFERENCE_OF: Final[dict[str, str]] = {
    "invoice_reminder": "send_invoice_reminders",
    "service_reminder": "send_service_reminders",
    "confirmation": "email_confirmations_all_jobs",
    "broadcast": "exclude_from_broadcasts",
}
# Rule 11's default: every document status except these.
UNTARGETED_DOCUMENT_STATUSES: Final = ("concept", "void")
# Rule 12's default: every service status except these.
UNSENDABLE_SERVICE_STATUSES: Final = ("inactive", "cancelled")
# Rule 13: kinds that need the service's allow_billing_email.
BILLING_EMAIL_KINDS: Final = ("invoice", "invoice_reminder")

CONCEPT_LABEL: Final = "Concept"


def document_label(number: str | None) -> str:
    """A document's label: its number, or ``Concept`` for a draft."""
    return number if number is not None else CONCEPT_LABEL
