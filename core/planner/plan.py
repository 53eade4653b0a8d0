"""The planner: every candidate of a definition at an instant, decided and explained.

A pure function of the stored data and ``at``: the same data and ``at`` give
the same plan, in the same order (customer id, then address, then document id).
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from operator import attrgetter
from typing import Any, TypeVar

from sqlalchemy import Connection

from core import settings
from core.attachments.look import FileLook
from core.attachments.reckon import limit_source, size_limit
from core.passwords import find_password
from core.planner.facts import (
    AddressFacts,
    DefinitionFacts,
    DocumentFacts,
    HistoryFacts,
    OrganisationFacts,
    ProfileFacts,
)
from core.planner.load import (
    Customers,
    address_keys,
    has_history,
    iter_pages,
    load_definition,
    load_held_by_runs,
    load_history,
    load_methods,
    load_organisation,
    load_profile,
    load_suppressions,
    unended_runs,
)
from core.planner.reasons import CODES, Reason
from core.planner.render_check import SAMPLE, RenderCheck, check_rendering
from core.planner.rules import (
    ADDRESS_RULES,
    CUSTOMER_RULES,
    DOCUMENT_RULES,
    FILE_RULES,
    HISTORY_RULES,
    PLAN_RULES,
    Context,
    Filed,
    billing_offset,
    no_address_for_key,
)
from core.quiet_hours import zone
from core.storage.database import Database
from core.suggested import command
from core.vocabulary import document_label

T = TypeVar("T")

INCLUDED, DEFERRED, EXCLUDED = "included", "deferred", "excluded"
DECISIONS = (INCLUDED, DEFERRED, EXCLUDED)
NO_REASONS: tuple[Reason, ...] = ()
_CODE = attrgetter("code")


class Candidate:
    """One (customer, address, document) and its decision."""

    __slots__ = (
        "address",
        "contact",
        "customer",
        "decision",
        "document",
        "label",
        "offset_days",
        "reasons",
        "send_after",
    )

    def __init__(
        self,
        customer: str,
        contact: str | None,
        address: str | None,
        document: str | None,
        label: str | None,
        decision: str,
        reasons: tuple[Reason, ...],
        send_after: datetime | None,
        offset_days: int | None = None,
    ) -> None:
        self.customer = customer
        self.contact = contact
        self.address = address
        self.document = document
        self.label = label
        self.decision = decision
        self.reasons = reasons
        self.send_after = send_after
        # Days from the due date at `at` (billing-rule definitions): the dedup
        # ledger records which rule a send answered. Not part of the plan's JSON.
        self.offset_days = offset_days

    def codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]

    def __repr__(self) -> str:
        return (
            f"Candidate({self.customer!r}, {self.address!r}, {self.document!r}, "
            f"{self.decision!r}, {self.codes()!r})"
        )


@dataclass
class Summary:
    candidates: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)

    def add(self, candidate: Candidate) -> None:
        self.candidates += 1
        self.decisions[candidate.decision] += 1
        for reason in candidate.reasons:
            self.by_reason[reason.code] += 1

    def count(self, included: int, deferred: int, excluded: int, reasons: list[Reason]) -> None:
        """What ``add`` counts, for many candidates at once: how many of each decision,
        and the reasons of them all."""
        self.candidates += included + deferred + excluded
        for decision, n in ((INCLUDED, included), (DEFERRED, deferred), (EXCLUDED, excluded)):
            if n:
                self.decisions[decision] += n
        self.by_reason.update(map(_CODE, reasons))

    def as_json(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "included": self.decisions[INCLUDED],
            "deferred": self.decisions[DEFERRED],
            "excluded": self.decisions[EXCLUDED],
            # In the order of reasons.md, so the output is stable.
            "by_reason": {code: self.by_reason[code] for code in CODES if self.by_reason[code]},
        }


@dataclass
class Plan:
    definition: DefinitionFacts
    organisation: OrganisationFacts
    at: datetime
    candidates: list[Candidate]
    summary: Summary
    warnings: list[str]
    # The templates rendered for the first included candidates (render_check.py).
    render_check: RenderCheck = field(default_factory=lambda: RenderCheck(0, ()))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a plan is built.

    A plan is millions of small acyclic objects; every collection of the
    oldest generation walks all of them, which made planning a million
    candidates more than twice as slow as planning them in ten pieces.
    Reference counting still frees everything; only cycle detection waits.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def plan_warnings(
    definition: DefinitionFacts, profile: ProfileFacts, environ: Mapping[str, str]
) -> list[str]:
    """What may stop the definition from sending that no reason code says."""
    warnings = []
    if definition.trigger_type == "routine" and not definition.trigger_enabled:
        warnings.append(
            f"the routine ({definition.trigger_cron}) is disabled: this definition never runs "
            "by itself"
        )
    if profile.password_env is not None and not find_password(profile.password_env, environ):
        warnings.append(
            f"SMTP profile {profile.id}: the environment variable {profile.password_env} that "
            "holds its password is not set here"
            + (" and the OS keyring has none for it" if settings.keyring_enabled(environ) else "")
        )
    if profile.dkim_key_env is not None and not environ.get(profile.dkim_key_env, "").strip():
        warnings.append(
            f"SMTP profile {profile.id}: the environment variable {profile.dkim_key_env} that "
            "holds its DKIM key is not set here (the run would fail before sending)"
        )
    if profile.failed_dmarc is not None:
        at, detail = profile.failed_dmarc
        warnings.append(
            "messages of this definition will fail DMARC at receivers that apply it "
            f"(smtp test of {at.date().isoformat()}): {detail}"
        )
    if profile.last_test_ok_at is None:
        warnings.append(
            f"SMTP profile {profile.id} has never passed an SMTP test "
            f"({command(f'smtp test {profile.id}')})"
        )
    return warnings


def unsubscribe_warnings(definition: DefinitionFacts, organisation: OrganisationFacts) -> list[str]:
    """A definition that offers unsubscribe with nowhere for requests to go, or whose
    templates give the reader no link (inbox.md)."""
    if not definition.offers_unsubscribe:
        return []
    if not organisation.unsubscribe_configured:
        return [
            f"{definition.kind} messages without an unsubscribe: Gmail and Yahoo require "
            "one-click unsubscribe of bulk senders (configure organisation.unsubscribe: url "
            "and/or address)"
        ]
    if not definition.uses_unsubscribe_url:
        return [
            "the templates do not use unsubscribe_url: a message that offers unsubscribe "
            "should carry a visible unsubscribe link"
        ]
    return []


@dataclass(frozen=True)
class Replan:
    """How a follow-up plans again what a run did not deliver (``after-sending.md``).

    ``billing_at``: the instant whose date decides the billing rules (the
    followed run's own planning instant, since the offset that made a document
    due then does not recur). ``ignore_history``: ledger entries that do not
    count (those the followed run made for the recipients chosen again).
    """

    billing_at: datetime
    ignore_history: Callable[[HistoryFacts], bool]


def build_context(
    connection: Connection,
    organisation: OrganisationFacts,
    definition: DefinitionFacts,
    at: datetime,
    customers: Sequence[str] | None = None,
    replan: Replan | None = None,
) -> Context:
    """The plan's fixed inputs. What the definition's ledger and its other runs hold
    is read a page at a time (``read_ledger``), except for a kind without documents
    under ``per_document``: its entries and holds match by address, whoever's, so they
    are read whole, here. For no customers at all (``[]``: rules 1 and 2 alone),
    nothing of the ledger is read."""
    ledger = customers is None or len(customers) > 0
    ctx = Context(
        organisation=organisation,
        definition=definition,
        at=at,
        billing_date=(replan.billing_at if replan else at)
        .astimezone(zone(organisation.timezone))
        .date(),
        methods=load_methods(connection),
        suppressions=load_suppressions(connection),
        has_history=ledger and definition.dedup != "none" and has_history(connection, definition),
        unended_runs=tuple(unended_runs(connection, definition)) if ledger else (),
        ledger_by_page=not (
            definition.dedup == "per_document" and definition.document_kind is None
        ),
    )
    ctx.ignore_history = replan.ignore_history if replan is not None else None
    if not ctx.ledger_by_page:
        if ctx.has_history:
            _file_history(ctx, load_history(connection, definition))
        if ctx.unended_runs:
            ctx.held_by_runs.update(load_held_by_runs(connection, definition, ctx.unended_runs))
    return ctx


def _file_history(ctx: Context, history: list[HistoryFacts]) -> None:
    """Put ``history`` (newest first, kept so in each list) where rules 16 and 17 look
    (in place: the rules' checks hold on to the dictionaries). What a follow-up does not
    count (``ctx.ignore_history``) is left out when a check reads it."""
    sent, targeted = ctx.sent_by_document, ctx.targeted_by_customer
    without = ctx.sent_without_document
    sent.clear()
    targeted.clear()
    without.clear()
    by_document = ctx.definition.dedup == "per_document"
    for order, entry in enumerate(history):
        if not by_document:
            targeted.setdefault(entry.customer_id, []).append(entry)
        elif entry.document_id is not None:
            sent.setdefault(entry.document_id, []).append(entry)
        else:  # by address: a candidate reads its address's entries, not all of them
            filed = without.get(entry.address_lower)
            if filed is None:
                filed = without[entry.address_lower] = Filed()
            filed.entries.append(entry)
            filed.order.append(order)


def read_ledger(connection: Connection, ctx: Context, which: Customers) -> None:
    """The history and other runs' holds of one page of customers, into ``ctx`` (in place:
    the rules' checks hold on to its dictionaries); nothing when they are read whole."""
    if not ctx.ledger_by_page:
        return
    definition = ctx.definition
    if ctx.has_history:
        _file_history(ctx, load_history(connection, definition, which))
    if ctx.unended_runs:
        ctx.held_by_runs.clear()
        ctx.held_by_runs.update(load_held_by_runs(connection, definition, ctx.unended_runs, which))


def _unique_addresses(addresses: list[AddressFacts]) -> list[AddressFacts]:
    """One per address whatever its case (the first by contact id, then address), by address."""
    if len(addresses) == 1:
        return addresses
    seen: set[str] = set()
    unique = []
    for address in sorted(addresses, key=lambda a: (a.contact_id, a.address)):
        if address.address_lower not in seen:
            seen.add(address.address_lower)
            unique.append(address)
    unique.sort(key=lambda a: a.address)
    return unique


def _checks(rules: Sequence[Callable[[Context], T | None]], ctx: Context) -> tuple[T, ...]:
    """The checks of ``rules`` that can fail in this plan, in table order."""
    return tuple(check for rule in rules if (check := rule(ctx)) is not None)


_BY_ID = attrgetter("id")
# A candidate without a document: (document, its reasons, billing offset).
NO_DOCUMENT: tuple[tuple[None, tuple[Reason, ...], None], ...] = ((None, NO_REASONS, None),)


def iter_candidates(
    connection: Connection,
    ctx: Context,
    summary: Summary,
    customers: Sequence[str] | None = None,
    sample: list[Candidate] | None = None,
) -> Iterator[Candidate]:
    """Every candidate, decided, in plan order, each counted in ``summary`` (a page at a time);
    the first included ones with an address also go into ``sample`` (the render check's).

    Each rule is decided once per address, customer or document (once per
    candidate for the history and files) and the reasons joined per
    candidate; the rules that cannot fail in this plan are not asked at all.
    """
    definition = ctx.definition
    plan_reasons = tuple(r for rule in PLAN_RULES if (r := rule(ctx)) is not None)
    address_checks = _checks(ADDRESS_RULES, ctx)
    customer_checks = _checks(CUSTOMER_RULES, ctx)
    document_checks = _checks(DOCUMENT_RULES, ctx)
    history_checks = _checks(HISTORY_RULES, ctx)
    attaching = definition.attach_document_files or bool(definition.attachment_files)
    file_checks = _checks(FILE_RULES, ctx) if attaching else ()
    own_files = bool(definition.attachment_files)
    with_documents = definition.document_kind is not None
    count_without_files = with_documents and definition.attach_document_files
    billing = definition.use_billing_rules
    quiet = definition.quiet_hours
    send_after_by_zone: dict[str, datetime | None] = {}

    for page in iter_pages(connection, definition, customers):
        ctx.services = page.services
        read_ledger(connection, ctx, page.which)
        missing = [c.id for c in page.customers if c.id not in page.addresses]
        ctx.other_keys = address_keys(connection, missing) if missing else {}
        page_addresses, page_documents = page.addresses, page.documents
        # Counted as decided, added to the summary once a page.
        included = deferred = excluded = without_files = 0
        seen: list[Reason] = []
        try:
            for customer in page.customers:
                documents = page_documents.get(customer.id)
                decided: Sequence[tuple[DocumentFacts | None, tuple[Reason, ...], int | None]]
                if documents is None:
                    if with_documents:
                        continue
                    decided = NO_DOCUMENT
                else:
                    if len(documents) > 1:
                        documents.sort(key=_BY_ID)
                    decided = []
                    for one in documents:
                        document_reasons = NO_REASONS
                        for document_check in document_checks:
                            found = document_check(one)
                            if found is not None:
                                document_reasons = (*document_reasons, found)
                        offset = billing_offset(ctx, one) if billing else None
                        decided.append((one, document_reasons, offset))
                customer_reasons = NO_REASONS
                for customer_check in customer_checks:
                    found = customer_check(customer)
                    if found is not None:
                        customer_reasons = (*customer_reasons, found)
                send_after = None
                if quiet is not None:
                    zone_name = customer.timezone or ctx.organisation.timezone
                    if zone_name not in send_after_by_zone:
                        send_after_by_zone[zone_name] = quiet.send_after(ctx.at, zone(zone_name))
                    send_after = send_after_by_zone[zone_name]
                addresses = page_addresses.get(customer.id)
                entries: list[tuple[AddressFacts | None, tuple[Reason, ...]]]
                if addresses:
                    entries = [
                        (a, tuple([r for check in address_checks if (r := check(a))]))
                        for a in _unique_addresses(addresses)
                    ]
                else:
                    entries = [(None, (no_address_for_key(ctx, customer),))]
                for address, address_reasons in entries:
                    head = plan_reasons + address_reasons + customer_reasons
                    contact_id = to = None
                    if address is not None:
                        contact_id, to = address.contact_id, address.address
                    for document, document_reasons, offset in decided:
                        reasons = head + document_reasons if document_reasons else head
                        for check in history_checks:
                            found = check(customer, address, document)
                            if found is not None:
                                reasons = (*reasons, found)
                        listed = document is not None and bool(document.files)
                        if file_checks and (listed or own_files):
                            for check in file_checks:
                                found = check(customer, address, document)
                                if found is not None:
                                    reasons = (*reasons, found)
                        if count_without_files and not listed:
                            without_files += 1
                        if reasons:
                            excluded += 1
                            seen += reasons
                            decision, after = EXCLUDED, None
                        elif send_after is not None:
                            deferred += 1
                            decision, after = DEFERRED, send_after
                        else:
                            included += 1
                            decision, after = INCLUDED, None
                        candidate = Candidate(
                            customer.id,
                            contact_id,
                            to,
                            document.id if document is not None else None,
                            document_label(document.number) if document is not None else None,
                            decision,
                            reasons,
                            after,
                            offset,
                        )
                        if (
                            decision is INCLUDED
                            and sample is not None
                            and len(sample) < SAMPLE
                            and to is not None
                        ):
                            sample.append(candidate)
                        yield candidate
        finally:
            summary.count(included, deferred, excluded, seen)
            ctx.without_files += without_files


def make_plan(
    database: Database,
    definition_id: str,
    at: datetime,
    *,
    customers: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    keep: int | None = None,
) -> Plan:
    """Plan ``definition_id`` at ``at`` (optionally for some customers only).

    ``keep``: hold the first ``keep`` candidates only (the others are decided and
    counted all the same): a preview of a million candidates in a page's memory.
    """
    with database.snapshot() as connection:  # one plan, however long it takes
        organisation = load_organisation(connection)
        definition = load_definition(connection, definition_id)
        return plan_definition(
            connection,
            organisation,
            definition,
            at,
            customers=customers,
            environ=environ,
            keep=keep,
        )


def plan_definition(
    connection: Connection,
    organisation: OrganisationFacts,
    definition: DefinitionFacts,
    at: datetime,
    *,
    customers: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    replan: Replan | None = None,
    keep: int | None = None,
) -> Plan:
    profile = load_profile(connection, definition.smtp_profile_id)
    summary = Summary()
    gathered = Gathered()
    decided = iter_plan(
        connection,
        organisation,
        definition,
        at,
        summary,
        customers=customers,
        replan=replan,
        gathered=gathered,
    )
    candidates = list(islice(decided, keep))
    for _ in decided:  # the rest, counted (``keep``)
        pass
    warnings = plan_warnings(definition, profile, os.environ if environ is None else environ)
    more, rendering = gathered_warnings(connection, organisation, definition, gathered)
    return Plan(definition, organisation, at, candidates, summary, warnings + more, rendering)


class Gathered:
    """What ``iter_plan`` notes beside the candidates it gives: how many have a document
    that lists no files, and the first included ones the render check samples."""

    __slots__ = ("sample", "without_files")

    def __init__(self) -> None:
        self.without_files = 0
        self.sample: list[Candidate] = []


def iter_plan(
    connection: Connection,
    organisation: OrganisationFacts,
    definition: DefinitionFacts,
    at: datetime,
    summary: Summary,
    *,
    customers: Sequence[str] | None = None,
    replan: Replan | None = None,
    gathered: Gathered | None = None,
) -> Iterator[Candidate]:
    """``plan_definition``'s candidates as they are decided, each counted in ``summary``.

    Nothing holds them: a million candidates are planned in the memory of a
    page of customers (a run's snapshot and ``plan --json`` take them so).
    ``gathered`` receives what the plan's later warnings need (``gathered_warnings``).
    """
    # Read now, not when the first candidate is asked for: a run being created from
    # these candidates is not yet "another run" of the definition (rule 18).
    ctx = planning_context(connection, organisation, definition, at, customers, replan)
    return _decided(connection, ctx, summary, customers, gathered)


def _decided(
    connection: Connection,
    ctx: Context,
    summary: Summary,
    customers: Sequence[str] | None,
    gathered: Gathered | None,
) -> Iterator[Candidate]:
    with gc_paused():
        yield from iter_candidates(
            connection, ctx, summary, customers, gathered.sample if gathered is not None else None
        )
    if gathered is not None:
        gathered.without_files = ctx.without_files


def planning_context(
    connection: Connection,
    organisation: OrganisationFacts,
    definition: DefinitionFacts,
    at: datetime,
    customers: Sequence[str] | None = None,
    replan: Replan | None = None,
) -> Context:
    """Everything ``iter_candidates`` consults that does not change from page to page:
    ``build_context`` and the files and size limit of rules 19 and 20."""
    profile = load_profile(connection, definition.smtp_profile_id)
    ctx = build_context(connection, organisation, definition, at, customers, replan)
    ctx.files = FileLook(organisation.documents_folder)
    ctx.size_limit = size_limit(profile.max_message_bytes, profile.server_size)
    ctx.limit_source = limit_source(profile.max_message_bytes, profile.server_size)
    return ctx


def gathered_warnings(
    connection: Connection,
    organisation: OrganisationFacts,
    definition: DefinitionFacts,
    gathered: Gathered,
) -> tuple[list[str], RenderCheck]:
    """The warnings known once every candidate is planned (after ``plan_warnings``): files
    without documents, templates that fail for the sampled candidates, unsubscribe."""
    warnings = []
    if gathered.without_files:
        warnings.append(
            f"{gathered.without_files} candidate(s) of this definition have a document that "
            "lists no files: they are sent without attachments "
            "(template.attachments.document_files)"
        )
    rendering = check_rendering(connection, definition.id, gathered.sample)
    warnings += rendering.warnings()
    warnings += unsubscribe_warnings(definition, organisation)
    return warnings, rendering


def profile_warnings(
    connection: Connection, definition: DefinitionFacts, environ: Mapping[str, str] | None = None
) -> list[str]:
    """``plan_warnings`` for a definition, its SMTP profile read."""
    profile = load_profile(connection, definition.smtp_profile_id)
    return plan_warnings(definition, profile, os.environ if environ is None else environ)
