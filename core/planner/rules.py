"""The inclusion rules of reasons.md: one small function per reason code.

``RULES`` lists them in the order of the spec's table, so the two can be read
side by side. Each rule looks at the part of a candidate it depends on (the
whole plan, an address, a customer, a document, or the history) so that the
planner can decide it once per address, customer or document and combine the
answers per candidate; the scopes follow one another in table order, so
joining their reasons keeps that order.

A rule returns ``None`` when it holds, or a ``Reason`` whose detail names the
data that decided.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from core.attachments.folder import Checked
from core.attachments.look import FileLook, Missing
from core.attachments.reckon import reckoned_size
from core.attachments.specs import FileSpec, message_specs
from core.clock import format_instant
from core.planner.facts import (
    AddressFacts,
    CustomerFacts,
    DefinitionFacts,
    DocumentFacts,
    HistoryFacts,
    MethodFacts,
    OrganisationFacts,
    ServiceFacts,
    SuppressionFacts,
)
from core.planner.reasons import CODES, Reason
from core.vocabulary import (
    ADDRESS_PREFERENCE_OF,
    BILLING_EMAIL_KINDS,
    CONTACT_PREFERENCE_OF,
    CONTACT_PREFERENCE_PERMISSIVE,
    OUTBOUND_TOGGLE_OF,
    UNSENDABLE_SERVICE_STATUSES,
    UNTARGETED_DOCUMENT_STATUSES,
)


@dataclass
class Context:
    """What every rule may consult: the plan's fixed inputs."""

    organisation: OrganisationFacts
    definition: DefinitionFacts
    # The instant planned for (quiet hours), and
    at: datetime
    # the date of `at` in the organisation's timezone (billing offsets).
    billing_date: date
    methods: dict[str, MethodFacts]
    suppressions: dict[str, SuppressionFacts]
    # per_document: history entries by document id (None for document-less kinds).
    sent_by_document: dict[str | None, list[HistoryFacts]] = field(default_factory=dict)
    # per_trigger: history entries by customer id.
    targeted_by_customer: dict[str, list[HistoryFacts]] = field(default_factory=dict)
    # Rule 18: what runs of this definition that have not ended hold, to the
    # lowest run id: (document id, lower-cased address) for per_document,
    # (customer id, None) for per_trigger.
    held_by_runs: dict[tuple[str | None, str | None], int] = field(default_factory=dict)
    # Services of the customers being planned, by id.
    services: dict[str, ServiceFacts] = field(default_factory=dict)
    # Keys a customer has addresses under, for customers with none under the key.
    other_keys: dict[str, list[str]] = field(default_factory=dict)
    # Rules 19 and 20: the documents folder's files as they are now, and the
    # profile's size limit (None: none known) with whose limit it is.
    files: FileLook | None = None
    size_limit: int | None = None
    limit_source: str = ""
    # Candidates whose document lists no files while the definition attaches them.
    without_files: int = 0


def _list(values: Any) -> str:
    return ", ".join(str(value) for value in values)


def _offset(days: int) -> str:
    return f"{days:+d}" if days else "0"


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- 1, 2: the whole plan ---------------------------------------------------


def sender_not_verified(ctx: Context) -> Reason | None:
    if ctx.organisation.sender_verified:
        return None
    return Reason(
        "sender_not_verified",
        f"the organisation {ctx.organisation.name} has not verified its sending account "
        "(sender_verified is false), so nothing is sent for it",
    )


def auto_send_disabled(ctx: Context) -> Reason | None:
    definition = ctx.definition
    if definition.trigger_type not in ("routine", "event"):
        return None
    toggle = OUTBOUND_TOGGLE_OF.get(definition.kind)
    if toggle is None or ctx.organisation.toggles[toggle]:
        return None
    trigger = "a routine" if definition.trigger_type == "routine" else "an event"
    return Reason(
        "auto_send_disabled",
        f"the definition is started by {trigger} and the organisation's outbound toggle "
        f"{toggle} is off",
    )


# -- 3-8: the address (3 alone when there is none) ---------------------------


def no_address_for_key(ctx: Context, customer: CustomerFacts) -> Reason:
    keys = ctx.other_keys.get(customer.id)
    where = f"its addresses are under: {_list(keys)}" if keys else "it has no email address at all"
    return Reason(
        "no_address_for_key",
        f"customer {customer.id} has no address under key {ctx.definition.address_key!r} "
        f"on any contact ({where})",
    )


def invalid_address(ctx: Context, address: AddressFacts) -> Reason | None:
    if address.problem is None:
        return None
    return Reason(
        "invalid_address",
        f"{address.address!r} is not a valid email address: {address.problem}",
    )


def suppressed(ctx: Context, address: AddressFacts) -> Reason | None:
    entry = ctx.suppressions.get(address.address_lower)
    if entry is None:
        return None
    listed = "" if entry.address == address.address else f" (listed as {entry.address})"
    return Reason(
        "suppressed",
        f"{address.address} is on the suppression list{listed}: {entry.describe()}",
    )


def contact_email_not_allowed(ctx: Context, address: AddressFacts) -> Reason | None:
    if address.allow_email:
        return None
    return Reason(
        "contact_email_not_allowed",
        f"contact {address.contact_id} ({address.contact_name}) does not allow email "
        "(allow_email is false)",
    )


def address_preference_off(ctx: Context, address: AddressFacts) -> Reason | None:
    preference = ADDRESS_PREFERENCE_OF.get(ctx.definition.kind)
    if (
        preference is not None
        and address.unsubscribed
        and address.unsubscribed.startswith(preference + ":")
    ):
        return Reason("address_preference_off", address.unsubscribed)
    if preference is None:
        return None
    if address.address_preference is True:
        return None
    if address.address_preference is False:
        return Reason(
            "address_preference_off",
            f"the {preference!r} preference of {address.address} is off",
        )
    if ctx.organisation.default_address_preferences.get(preference, True):
        return None
    return Reason(
        "address_preference_off",
        f"the {preference!r} preference of {address.address} is unset, and the organisation's "
        "default for new addresses is off",
    )


def contact_preference_off(ctx: Context, address: AddressFacts) -> Reason | None:
    preference = CONTACT_PREFERENCE_OF.get(ctx.definition.kind)
    if (
        preference is not None
        and address.unsubscribed
        and address.unsubscribed.startswith(preference + ":")
    ):
        return Reason("contact_preference_off", address.unsubscribed)
    if preference is None:
        return None
    permissive = CONTACT_PREFERENCE_PERMISSIVE[preference]
    value = address.contact_preference
    unset = value is None
    if unset:
        value = ctx.organisation.default_contact_preferences.get(preference, permissive)
    if value == permissive:
        return None
    state = "on" if value else "off"
    which = (
        f"the {preference!r} preference of contact {address.contact_id} ({address.contact_name})"
    )
    if unset:
        return Reason(
            "contact_preference_off",
            f"{which} is unset, and the organisation's default for new contacts is {state}",
        )
    return Reason("contact_preference_off", f"{which} is {state}")


# -- 9, 10: the customer -----------------------------------------------------


def cluster_not_targeted(ctx: Context, customer: CustomerFacts) -> Reason | None:
    clusters = ctx.definition.clusters
    if clusters is None or customer.cluster in clusters:
        return None
    where = f"is in cluster {customer.cluster!r}" if customer.cluster else "has no cluster"
    targets = _list(clusters) if clusters else "no cluster at all"
    return Reason(
        "cluster_not_targeted",
        f"customer {customer.id} {where}; the definition targets {targets}",
    )


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def audience_mismatch(ctx: Context, customer: CustomerFacts) -> Reason | None:
    audience = ctx.definition.audience
    if not audience:
        return None
    failing = []
    for clause in audience:
        name = clause["attribute"]
        present = name in customer.attributes
        actual = customer.attributes.get(name)
        if "equals" in clause:
            wanted = f"{name} equals {_value(clause['equals'])}"
            holds = present and _same(actual, clause["equals"])
        else:
            wanted = f"{name} in [{', '.join(_value(v) for v in clause['in'])}]"
            holds = present and any(_same(actual, v) for v in clause["in"])
        if not holds:
            has = f"it is {_value(actual)}" if present else "the customer has no such attribute"
            failing.append(f"{wanted}: {has}")
    if not failing:
        return None
    return Reason("audience_mismatch", "; ".join(failing))


# -- 11-15: the document -----------------------------------------------------


def document_status_not_targeted(ctx: Context, document: DocumentFacts) -> Reason | None:
    statuses = ctx.definition.document_statuses
    if statuses is None:
        if document.status not in UNTARGETED_DOCUMENT_STATUSES:
            return None
        targets = "every status except concept and void (none are set)"
    else:
        if document.status in statuses:
            return None
        targets = _list(statuses) if statuses else "no status at all"
    return Reason(
        "document_status_not_targeted",
        f"document {document.id} is {document.status}; the definition targets {targets}",
    )


def service_status_not_allowed(ctx: Context, document: DocumentFacts) -> Reason | None:
    if document.service_id is None:
        return None
    service = ctx.services.get(document.service_id)
    if service is None:
        return None
    method = ctx.methods.get(document.billing_method_id or "")
    if method is not None and method.statuses is not None:
        if service.status in method.statuses:
            return None
        allowed = (
            f"billing method {method.id} ({method.name}) sends for services that are "
            f"{_list(method.statuses) if method.statuses else 'in no status at all'}"
        )
    else:
        if service.status not in UNSENDABLE_SERVICE_STATUSES:
            return None
        whose = (
            f"billing method {method.id} ({method.name}) names no statuses to send for"
            if method is not None
            else "the document has no billing method to allow it"
        )
        allowed = f"{whose}, so nothing is sent for inactive or cancelled services"
    return Reason(
        "service_status_not_allowed",
        f"service {service.id} of document {document.id} is {service.status}; {allowed}",
    )


def service_email_not_allowed(ctx: Context, document: DocumentFacts) -> Reason | None:
    if ctx.definition.kind not in BILLING_EMAIL_KINDS or document.service_id is None:
        return None
    service = ctx.services.get(document.service_id)
    if service is None or service.allow_billing_email:
        return None
    return Reason(
        "service_email_not_allowed",
        f"service {service.id} of document {document.id} does not allow billing email "
        "(allow_billing_email is false)",
    )


def billing_method_has_no_rules(ctx: Context, document: DocumentFacts) -> Reason | None:
    if not ctx.definition.use_billing_rules:
        return None
    if document.billing_method_id is None:
        return Reason(
            "billing_method_has_no_rules",
            f"document {document.id} has no billing method, so no send rule applies",
        )
    method = ctx.methods.get(document.billing_method_id)
    if method is None or method.offsets:
        return None
    return Reason(
        "billing_method_has_no_rules",
        f"billing method {method.id} ({method.name}) of document {document.id} has no send rules",
    )


def billing_offset(ctx: Context, document: DocumentFacts) -> int | None:
    """Calendar days from the due date to the plan's date (organisation's timezone)."""
    if document.due_date is None:
        return None
    return (ctx.billing_date - document.due_date).days


def billing_rule_not_due(ctx: Context, document: DocumentFacts) -> Reason | None:
    if not ctx.definition.use_billing_rules or document.billing_method_id is None:
        return None
    method = ctx.methods.get(document.billing_method_id)
    if method is None or not method.offsets:
        return None
    rules = method.offsets_text
    offset = billing_offset(ctx, document)
    if offset is None:
        return Reason(
            "billing_rule_not_due",
            f"document {document.id} has no due date, so none of the rules of {method.name} "
            f"({rules} days) can be due",
        )
    if offset in method.offsets:
        return None
    return Reason(
        "billing_rule_not_due",
        f"document {document.id} is due {document.due_date}; on "
        f"{ctx.billing_date.isoformat()} ({ctx.organisation.timezone}) that is offset "
        f"{_offset(offset)} days, and {method.name} sends at offsets {rules} days",
    )


# -- 16, 17: the history (18, other runs, below) --------------------------------


def already_sent(
    ctx: Context,
    customer: CustomerFacts,
    address: AddressFacts | None,
    document: DocumentFacts | None,
) -> Reason | None:
    if ctx.definition.dedup != "per_document":
        return None
    entries = ctx.sent_by_document.get(document.id if document is not None else None)
    if not entries:
        return None
    lower = address.address_lower if address is not None else None
    offset: int | None = None
    if ctx.definition.use_billing_rules and document is not None:
        offset = billing_offset(ctx, document)
    match = None
    for entry in entries:  # newest first
        if entry.address_lower is not None and entry.address_lower != lower:
            continue
        offset_differs = entry.offset_days is not None and entry.offset_days != offset
        if ctx.definition.use_billing_rules and offset_differs:
            continue
        match = entry
        break
    if match is None:
        return None
    what = f"document {document.id}" if document is not None else "this message"
    to = f" to {address.address}" if address is not None else ""
    at_offset = (
        f" at offset {_offset(match.offset_days)} days"
        if ctx.definition.use_billing_rules and match.offset_days is not None
        else ""
    )
    run = f" by run {match.run_id}" if match.run_id is not None else ""
    return Reason(
        "already_sent",
        f"this definition sent {what}{to}{at_offset} on {format_instant(match.at)}{run}",
        run=match.run_id,
    )


def already_targeted(
    ctx: Context,
    customer: CustomerFacts,
    address: AddressFacts | None,
    document: DocumentFacts | None,
) -> Reason | None:
    if ctx.definition.dedup != "per_trigger":
        return None
    entries = ctx.targeted_by_customer.get(customer.id)
    if not entries:
        return None
    latest = entries[0]
    run = f" by run {latest.run_id}" if latest.run_id is not None else ""
    more = f" ({len(entries)} times in all)" if len(entries) > 1 else ""
    return Reason(
        "already_targeted",
        f"this definition already targeted customer {customer.id} on "
        f"{format_instant(latest.at)}{run}{more}",
        run=latest.run_id,
    )


# -- 18: other runs ------------------------------------------------------------


def in_another_run(
    ctx: Context,
    customer: CustomerFacts,
    address: AddressFacts | None,
    document: DocumentFacts | None,
) -> Reason | None:
    if not ctx.held_by_runs:
        return None
    if ctx.definition.dedup == "per_trigger":
        run = ctx.held_by_runs.get((customer.id, None))
        if run is None:
            return None
        return Reason(
            "in_another_run",
            f"run {run} of this definition has not ended and still holds customer {customer.id}",
        )
    if ctx.definition.dedup != "per_document" or address is None:
        return None
    run = ctx.held_by_runs.get(
        (document.id if document is not None else None, address.address_lower)
    )
    if run is None:
        return None
    what = f"document {document.id}" if document is not None else "this message"
    return Reason(
        "in_another_run",
        f"run {run} of this definition has not ended and still holds {what} to {address.address}",
    )


# -- 19, 20: the files the message attaches -------------------------------------


def attached_files(ctx: Context, document: DocumentFacts | None) -> tuple[FileSpec, ...]:
    """What the candidate's message attaches: its document's files, then the definition's."""
    definition = ctx.definition
    return message_specs(
        document.files if document is not None else (),
        definition.attach_document_files,
        definition.attachment_files,
    )


def _whose(spec: FileSpec, document: DocumentFacts | None) -> str:
    if document is not None and spec in document.files:
        return f"document {document.id}'s file"
    return "the definition's file"


def document_file_missing(
    ctx: Context,
    customer: CustomerFacts,
    address: AddressFacts | None,
    document: DocumentFacts | None,
) -> Reason | None:
    if ctx.files is None:
        return None
    missing = []
    for spec in attached_files(ctx, document):
        found = ctx.files.look(spec.path)
        if isinstance(found, Missing):
            missing.append(f"{_whose(spec, document)} {found.why}")
    if not missing:
        return None
    where = f" (documents folder {ctx.files.folder})" if ctx.files.folder else ""
    return Reason("document_file_missing", "; ".join(missing) + where)


def message_too_large(
    ctx: Context,
    customer: CustomerFacts,
    address: AddressFacts | None,
    document: DocumentFacts | None,
) -> Reason | None:
    if ctx.files is None or ctx.size_limit is None:
        return None
    sizes = [
        found.size
        for spec in attached_files(ctx, document)
        if isinstance(found := ctx.files.look(spec.path), Checked)
    ]
    if not sizes:
        return None
    size = reckoned_size(sizes)
    if size <= ctx.size_limit:
        return None
    count = f"{len(sizes)} attachment" + ("s" if len(sizes) > 1 else "")
    return Reason(
        "message_too_large",
        f"the message with its {count} ({sum(sizes):,} bytes of files) is reckoned at "
        f"{size:,} bytes, over the limit of {ctx.size_limit:,} bytes ({ctx.limit_source})",
    )


# -- the table ---------------------------------------------------------------

PlanRule = Callable[[Context], Reason | None]
AddressRule = Callable[[Context, AddressFacts], Reason | None]
CustomerRule = Callable[[Context, CustomerFacts], Reason | None]
DocumentRule = Callable[[Context, DocumentFacts], Reason | None]
HistoryRule = Callable[
    [Context, CustomerFacts, AddressFacts | None, DocumentFacts | None], Reason | None
]

# (code, scope, rule) in the order of reasons.md. Rule 3 has no function of
# its own here: a missing address is one candidate with `address: null`, and
# the planner gives it `no_address_for_key` in place of rules 4-8.
RULES: tuple[tuple[str, str, Callable[..., Any]], ...] = (
    ("sender_not_verified", "plan", sender_not_verified),
    ("auto_send_disabled", "plan", auto_send_disabled),
    ("no_address_for_key", "address", no_address_for_key),
    ("invalid_address", "address", invalid_address),
    ("suppressed", "address", suppressed),
    ("contact_email_not_allowed", "address", contact_email_not_allowed),
    ("address_preference_off", "address", address_preference_off),
    ("contact_preference_off", "address", contact_preference_off),
    ("cluster_not_targeted", "customer", cluster_not_targeted),
    ("audience_mismatch", "customer", audience_mismatch),
    ("document_status_not_targeted", "document", document_status_not_targeted),
    ("service_status_not_allowed", "document", service_status_not_allowed),
    ("service_email_not_allowed", "document", service_email_not_allowed),
    ("billing_method_has_no_rules", "document", billing_method_has_no_rules),
    ("billing_rule_not_due", "document", billing_rule_not_due),
    ("already_sent", "history", already_sent),
    ("already_targeted", "history", already_targeted),
    ("in_another_run", "history", in_another_run),
    ("document_file_missing", "files", document_file_missing),
    ("message_too_large", "files", message_too_large),
)
SCOPES = ("plan", "address", "customer", "document", "history", "files")

assert tuple(code for code, _, _ in RULES) == CODES, "RULES must follow reasons.md"
assert [scope for _, scope, _ in RULES] == sorted(
    (scope for _, scope, _ in RULES), key=SCOPES.index
), "each scope's rules must be contiguous, in scope order"

PLAN_RULES: tuple[PlanRule, ...] = tuple(f for _, s, f in RULES if s == "plan")
ADDRESS_RULES: tuple[AddressRule, ...] = tuple(
    f for c, s, f in RULES if s == "address" and c != "no_address_for_key"
)
CUSTOMER_RULES: tuple[CustomerRule, ...] = tuple(f for _, s, f in RULES if s == "customer")
DOCUMENT_RULES: tuple[DocumentRule, ...] = tuple(f for _, s, f in RULES if s == "document")
HISTORY_RULES: tuple[HistoryRule, ...] = tuple(f for _, s, f in RULES if s == "history")
# Same signature as the history rules: they look at the candidate's document.
FILE_RULES: tuple[HistoryRule, ...] = tuple(f for _, s, f in RULES if s == "files")
