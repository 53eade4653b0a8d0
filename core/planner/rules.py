"""The inclusion rules of reasons.md: one small function per reason code.

``RULES`` lists them in the order of the spec's table, so the two can be read
side by side. Each rule looks at the part of a candidate it depends on (the
whole plan, an address, a customer, a document, or the candidate's history
and files) so that the planner can decide it once per address, customer or
document and combine the answers per candidate; the scopes follow one
another in table order, so joining their reasons keeps that order.

A plan rule returns ``None`` when it holds, or a ``Reason`` whose detail
names the data that decided. Every other rule is given the plan's fixed
inputs (``Context``) once and returns its check, a function of the address,
customer, document or candidate that returns ``None`` or a ``Reason`` — or
returns no check at all when it cannot fail in this plan (no billing rules,
no history, no clusters named, ...). What a check's sentences share is worked
out once, with the check; the sentence itself is written only when it is
read (``Reason.later``), since a million candidates are decided for every one
whose reasons anyone reads.
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
class Filed:
    """Ledger entries filed under one key, newest first, each with its place in the
    whole ledger's order (to tell which of two lists' entries is the newer)."""

    entries: list[HistoryFacts] = field(default_factory=list)
    order: list[int] = field(default_factory=list)


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
    # Whether the definition has any history (else rules 16 and 17 cannot fail), and
    # whether the ledger and other runs' holds are read a page at a time (all but a
    # kind without documents under per_document, which match by address: read whole).
    has_history: bool = False
    ledger_by_page: bool = True
    # Ledger entries that do not count (a follow-up's: ``Replan.ignore_history``),
    # asked as a check reads them (a follow-up's change from page to page).
    ignore_history: Callable[[HistoryFacts], bool] | None = None
    # The runs of this definition that have not ended (rule 18).
    unended_runs: tuple[int, ...] = ()
    # The page's history (read a page at a time, the dictionaries filled in place):
    # per_document: history entries by document id, newest first, and the entries
    # without a document (a kind without documents) by address (None: without one).
    sent_by_document: dict[str | None, list[HistoryFacts]] = field(default_factory=dict)
    sent_without_document: dict[str | None, Filed] = field(default_factory=dict)
    # per_trigger: history entries by customer id.
    targeted_by_customer: dict[str, list[HistoryFacts]] = field(default_factory=dict)
    # Rule 18: what runs of this definition that have not ended hold (of the page's
    # customers), to the lowest run id: (document id, lower-cased address) for per_document,
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
    # Days from each due date to `billing_date`, as they are worked out (billing_offset).
    offsets: dict[date, int] = field(default_factory=dict)


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


def invalid_address(ctx: Context) -> AddressCheck:
    def check(address: AddressFacts) -> Reason | None:
        if address.problem is None:
            return None
        return Reason.later(
            "invalid_address",
            "{!r} is not a valid email address: {}",
            (address.address, address.problem),
        )

    return check


def suppressed(ctx: Context) -> AddressCheck | None:
    suppressions = ctx.suppressions
    if not suppressions:
        return None

    def check(address: AddressFacts) -> Reason | None:
        entry = suppressions.get(address.address_lower)
        if entry is None:
            return None
        listed = "" if entry.address == address.address else f" (listed as {entry.address})"
        return Reason(
            "suppressed",
            f"{address.address} is on the suppression list{listed}: {entry.describe()}",
        )

    return check


def contact_email_not_allowed(ctx: Context) -> AddressCheck:
    def check(address: AddressFacts) -> Reason | None:
        if address.allow_email:
            return None
        return Reason.later(
            "contact_email_not_allowed",
            "contact {} ({}) does not allow email (allow_email is false)",
            (address.contact_id, address.contact_name),
        )

    return check


def address_preference_off(ctx: Context) -> AddressCheck | None:
    preference = ADDRESS_PREFERENCE_OF.get(ctx.definition.kind)
    if preference is None:
        return None
    unsubscribed_from = preference + ":"
    default_on = bool(ctx.organisation.default_address_preferences.get(preference, True))

    def check(address: AddressFacts) -> Reason | None:
        unsubscribed = address.unsubscribed
        if unsubscribed and unsubscribed.startswith(unsubscribed_from):
            return Reason("address_preference_off", unsubscribed)
        value = address.address_preference
        if value is None:
            if default_on:
                return None
            return Reason.later(
                "address_preference_off",
                "the {!r} preference of {} is unset, and the organisation's default for new "
                "addresses is off",
                (preference, address.address),
            )
        if value:
            return None
        return Reason.later(
            "address_preference_off",
            "the {!r} preference of {} is off",
            (preference, address.address),
        )

    return check


def contact_preference_off(ctx: Context) -> AddressCheck | None:
    preference = CONTACT_PREFERENCE_OF.get(ctx.definition.kind)
    if preference is None:
        return None
    unsubscribed_from = preference + ":"
    permissive = CONTACT_PREFERENCE_PERMISSIVE[preference]
    default = ctx.organisation.default_contact_preferences.get(preference, permissive)

    def check(address: AddressFacts) -> Reason | None:
        unsubscribed = address.unsubscribed
        if unsubscribed and unsubscribed.startswith(unsubscribed_from):
            return Reason("contact_preference_off", unsubscribed)
        value = address.contact_preference
        unset = value is None
        if unset:
            value = default
        if value == permissive:
            return None
        state = "on" if value else "off"
        return Reason.later(
            "contact_preference_off",
            (
                "the {!r} preference of contact {} ({}) is unset, and the organisation's "
                "default for new contacts is {}"
                if unset
                else "the {!r} preference of contact {} ({}) is {}"
            ),
            (preference, address.contact_id, address.contact_name, state),
        )

    return check


# -- 9, 10: the customer -----------------------------------------------------


def cluster_not_targeted(ctx: Context) -> CustomerCheck | None:
    clusters = ctx.definition.clusters
    if clusters is None:
        return None
    targets = _list(clusters) if clusters else "no cluster at all"

    def check(customer: CustomerFacts) -> Reason | None:
        if customer.cluster in clusters:
            return None
        if customer.cluster:
            return Reason.later(
                "cluster_not_targeted",
                "customer {} is in cluster {!r}; the definition targets {}",
                (customer.id, customer.cluster, targets),
            )
        return Reason.later(
            "cluster_not_targeted",
            "customer {} has no cluster; the definition targets {}",
            (customer.id, targets),
        )

    return check


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def audience_mismatch(ctx: Context) -> CustomerCheck | None:
    audience = ctx.definition.audience
    if not audience:
        return None

    def check(customer: CustomerFacts) -> Reason | None:
        attributes = customer.attributes or {}
        failing = []
        for clause in audience:
            name = clause["attribute"]
            present = name in attributes
            actual = attributes.get(name)
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

    return check


# -- 11-15: the document -----------------------------------------------------


def document_status_not_targeted(ctx: Context) -> DocumentCheck:
    statuses = ctx.definition.document_statuses
    if statuses is None:
        # Every status but these is targeted.
        failing: frozenset[str] | None = frozenset(UNTARGETED_DOCUMENT_STATUSES)
        targeted: frozenset[str] = frozenset()
        targets = "every status except concept and void (none are set)"
    else:
        failing, targeted = None, frozenset(statuses)
        targets = _list(statuses) if statuses else "no status at all"

    def check(document: DocumentFacts) -> Reason | None:
        status = document.status
        if (status not in failing) if failing is not None else (status in targeted):
            return None
        return Reason.later(
            "document_status_not_targeted",
            "document {} is {}; the definition targets {}",
            (document.id, status, targets),
        )

    return check


def _service_policies(
    methods: dict[str, MethodFacts],
) -> tuple[dict[str, tuple[frozenset[str] | None, str]], tuple[None, str]]:
    """Rule 12 by billing method: the service statuses it sends for (None: every status
    but inactive and cancelled) and what the reason says of it; and the same for a
    document whose billing method is unknown."""
    policies: dict[str, tuple[frozenset[str] | None, str]] = {}
    for method in methods.values():
        if method.statuses is not None:
            listed = _list(method.statuses) if method.statuses else "in no status at all"
            policies[method.id] = (
                frozenset(method.statuses),
                f"billing method {method.id} ({method.name}) sends for services that are {listed}",
            )
        else:
            policies[method.id] = (
                None,
                f"billing method {method.id} ({method.name}) names no statuses to send for, "
                "so nothing is sent for inactive or cancelled services",
            )
    unknown = (
        None,
        "the document has no billing method to allow it, so nothing is sent for inactive or "
        "cancelled services",
    )
    return policies, unknown


def service_status_not_allowed(ctx: Context) -> DocumentCheck:
    policies, unknown = _service_policies(ctx.methods)
    unsendable = frozenset(UNSENDABLE_SERVICE_STATUSES)

    def check(document: DocumentFacts) -> Reason | None:
        if document.service_id is None:
            return None
        service = ctx.services.get(document.service_id)  # the page's services
        if service is None:
            return None
        sendable, allowed = policies.get(document.billing_method_id or "", unknown)
        if sendable is not None:
            if service.status in sendable:
                return None
        elif service.status not in unsendable:
            return None
        return Reason.later(
            "service_status_not_allowed",
            "service {} of document {} is {}; {}",
            (service.id, document.id, service.status, allowed),
        )

    return check


def service_email_not_allowed(ctx: Context) -> DocumentCheck | None:
    if ctx.definition.kind not in BILLING_EMAIL_KINDS:
        return None

    def check(document: DocumentFacts) -> Reason | None:
        if document.service_id is None:
            return None
        service = ctx.services.get(document.service_id)
        if service is None or service.allow_billing_email:
            return None
        return Reason.later(
            "service_email_not_allowed",
            "service {} of document {} does not allow billing email (allow_billing_email is false)",
            (service.id, document.id),
        )

    return check


def billing_method_has_no_rules(ctx: Context) -> DocumentCheck | None:
    if not ctx.definition.use_billing_rules:
        return None
    methods = ctx.methods

    def check(document: DocumentFacts) -> Reason | None:
        if document.billing_method_id is None:
            return Reason.later(
                "billing_method_has_no_rules",
                "document {} has no billing method, so no send rule applies",
                (document.id,),
            )
        method = methods.get(document.billing_method_id)
        if method is None or method.offsets:
            return None
        return Reason.later(
            "billing_method_has_no_rules",
            "billing method {} ({}) of document {} has no send rules",
            (method.id, method.name, document.id),
        )

    return check


def billing_offset(ctx: Context, document: DocumentFacts) -> int | None:
    """Calendar days from the due date to the plan's date (organisation's timezone)."""
    due = document.due_date
    if due is None:
        return None
    days = ctx.offsets.get(due)
    if days is None:
        days = ctx.offsets[due] = (ctx.billing_date - due).days
    return days


def billing_rule_not_due(ctx: Context) -> DocumentCheck | None:
    if not ctx.definition.use_billing_rules:
        return None
    methods = ctx.methods
    on = ctx.billing_date.isoformat()
    timezone = ctx.organisation.timezone
    offset_texts: dict[int, str] = {}

    def check(document: DocumentFacts) -> Reason | None:
        if document.billing_method_id is None:
            return None
        method = methods.get(document.billing_method_id)
        if method is None or not method.offsets:
            return None
        offset = billing_offset(ctx, document)
        if offset is None:
            return Reason.later(
                "billing_rule_not_due",
                "document {} has no due date, so none of the rules of {} ({} days) can be due",
                (document.id, method.name, method.offsets_text),
            )
        if offset in method.offsets:
            return None
        text = offset_texts.get(offset)
        if text is None:
            text = offset_texts[offset] = _offset(offset)
        return Reason.later(
            "billing_rule_not_due",
            "document {} is due {}; on {} ({}) that is offset {} days, and {} sends at "
            "offsets {} days",
            (document.id, document.due_date, on, timezone, text, method.name, method.offsets_text),
        )

    return check


# -- 16, 17: the history (18, other runs, below) --------------------------------


def _first_sent(
    entries: list[HistoryFacts],
    lower: str | None,
    offset: int | None,
    billing: bool,
    ignore: Callable[[HistoryFacts], bool] | None,
) -> int | None:
    """The index of the newest of ``entries`` (newest first) that answers a candidate
    to ``lower`` at ``offset``, or None."""
    for index, entry in enumerate(entries):
        if entry.address_lower is not None and entry.address_lower != lower:
            continue
        if billing and entry.offset_days is not None and entry.offset_days != offset:
            continue
        if ignore is not None and ignore(entry):
            continue
        return index
    return None


def already_sent(ctx: Context) -> CandidateCheck | None:
    if ctx.definition.dedup != "per_document" or not ctx.has_history:
        return None
    sent, by_address = ctx.sent_by_document, ctx.sent_without_document
    billing = ctx.definition.use_billing_rules

    def check(
        customer: CustomerFacts, address: AddressFacts | None, document: DocumentFacts | None
    ) -> Reason | None:
        lower = address.address_lower if address is not None else None
        ignore = ctx.ignore_history
        match: HistoryFacts | None = None
        if document is not None:
            entries = sent.get(document.id)
            if not entries:
                return None
            offset = billing_offset(ctx, document) if billing else None
            found = _first_sent(entries, lower, offset, billing, ignore)
            match = entries[found] if found is not None else None
        else:
            # Entries without a document, filed by address (those without one apart): the
            # newest of the address's and the address-less is the newest that answers.
            newest = None
            for key in (lower, None) if lower is not None else (None,):
                listed = by_address.get(key)
                if not listed:
                    continue
                found = _first_sent(listed.entries, lower, None, billing, ignore)
                if found is not None and (newest is None or listed.order[found] < newest):
                    newest, match = listed.order[found], listed.entries[found]
        if match is None:
            return None
        what = f"document {document.id}" if document is not None else "this message"
        to = f" to {address.address}" if address is not None else ""
        at_offset = (
            f" at offset {_offset(match.offset_days)} days"
            if billing and match.offset_days is not None
            else ""
        )
        run = f" by run {match.run_id}" if match.run_id is not None else ""
        return Reason(
            "already_sent",
            f"this definition sent {what}{to}{at_offset} on {format_instant(match.at)}{run}",
            run=match.run_id,
        )

    return check


def already_targeted(ctx: Context) -> CandidateCheck | None:
    if ctx.definition.dedup != "per_trigger" or not ctx.has_history:
        return None
    targeted = ctx.targeted_by_customer

    def check(
        customer: CustomerFacts, address: AddressFacts | None, document: DocumentFacts | None
    ) -> Reason | None:
        entries = targeted.get(customer.id)
        if not entries:
            return None
        ignore = ctx.ignore_history
        counted = entries if ignore is None else [e for e in entries if not ignore(e)]
        if not counted:
            return None
        latest = counted[0]
        run = f" by run {latest.run_id}" if latest.run_id is not None else ""
        more = f" ({len(counted)} times in all)" if len(counted) > 1 else ""
        return Reason(
            "already_targeted",
            f"this definition already targeted customer {customer.id} on "
            f"{format_instant(latest.at)}{run}{more}",
            run=latest.run_id,
        )

    return check


# -- 18: other runs ------------------------------------------------------------


def in_another_run(ctx: Context) -> CandidateCheck | None:
    held = ctx.held_by_runs
    dedup = ctx.definition.dedup
    if not ctx.unended_runs or dedup not in ("per_document", "per_trigger"):
        return None

    def check(
        customer: CustomerFacts, address: AddressFacts | None, document: DocumentFacts | None
    ) -> Reason | None:
        if dedup == "per_trigger":
            run = held.get((customer.id, None))
            if run is None:
                return None
            return Reason(
                "in_another_run",
                f"run {run} of this definition has not ended and still holds customer "
                f"{customer.id}",
            )
        if address is None:
            return None
        run = held.get((document.id if document is not None else None, address.address_lower))
        if run is None:
            return None
        what = f"document {document.id}" if document is not None else "this message"
        return Reason(
            "in_another_run",
            f"run {run} of this definition has not ended and still holds {what} to "
            f"{address.address}",
        )

    return check


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


def document_file_missing(ctx: Context) -> CandidateCheck | None:
    files = ctx.files
    if files is None:
        return None

    def check(
        customer: CustomerFacts, address: AddressFacts | None, document: DocumentFacts | None
    ) -> Reason | None:
        missing = []
        for spec in attached_files(ctx, document):
            found = files.look(spec.path)
            if isinstance(found, Missing):
                missing.append(f"{_whose(spec, document)} {found.why}")
        if not missing:
            return None
        where = f" (documents folder {files.folder})" if files.folder else ""
        return Reason("document_file_missing", "; ".join(missing) + where)

    return check


def message_too_large(ctx: Context) -> CandidateCheck | None:
    files, limit = ctx.files, ctx.size_limit
    if files is None or limit is None:
        return None

    def check(
        customer: CustomerFacts, address: AddressFacts | None, document: DocumentFacts | None
    ) -> Reason | None:
        sizes = [
            found.size
            for spec in attached_files(ctx, document)
            if isinstance(found := files.look(spec.path), Checked)
        ]
        if not sizes:
            return None
        size = reckoned_size(sizes)
        if size <= limit:
            return None
        count = f"{len(sizes)} attachment" + ("s" if len(sizes) > 1 else "")
        return Reason(
            "message_too_large",
            f"the message with its {count} ({sum(sizes):,} bytes of files) is reckoned at "
            f"{size:,} bytes, over the limit of {limit:,} bytes ({ctx.limit_source})",
        )

    return check


# -- the table ---------------------------------------------------------------

PlanRule = Callable[[Context], Reason | None]
AddressCheck = Callable[[AddressFacts], Reason | None]
CustomerCheck = Callable[[CustomerFacts], Reason | None]
DocumentCheck = Callable[[DocumentFacts], Reason | None]
# A candidate's history and files: its customer, address (None: rule 3) and document.
CandidateCheck = Callable[[CustomerFacts, AddressFacts | None, DocumentFacts | None], Reason | None]
AddressRule = Callable[[Context], AddressCheck | None]
CustomerRule = Callable[[Context], CustomerCheck | None]
DocumentRule = Callable[[Context], DocumentCheck | None]
CandidateRule = Callable[[Context], CandidateCheck | None]

# (code, scope, rule) in the order of reasons.md. Rule 3 has no check of its
# own: a missing address is one candidate with `address: null`, and the
# planner gives it `no_address_for_key` in place of rules 4-8.
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
HISTORY_RULES: tuple[CandidateRule, ...] = tuple(f for _, s, f in RULES if s == "history")
FILE_RULES: tuple[CandidateRule, ...] = tuple(f for _, s, f in RULES if s == "files")
