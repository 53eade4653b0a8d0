"""From the records of a ``msgrun/1`` file to rows ready to store, or every problem in them.

One function per kind of record checks what the record alone can tell:
unknown keys, required fields, types, enums, dates, timestamps, timezones,
times of day, cron expressions and template syntax. ``core/interchange/load.py``
reads the file a record at a time and calls them; duplicate ids and references
are checked there, against what the file gave before and what is stored.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.addresses import address_problem, fold
from core.dkim_keys import ALGORITHMS, DkimSettings
from core.interchange import files
from core.interchange.reader import (
    ATTRIBUTE_ALLOWED,
    MISSING,
    Problem,
    Reader,
    control_character,
    join,
    object_pairs,
    type_name,
)
from core.messages.verp import MAX_BOUNCE_LOCAL_PART, MAX_LOCAL_PART
from core.sender_domains import aligned, domain_of, is_public_suffix
from core.storage.ledger import history_fingerprint
from core.templating import names_used, template_problem
from core.unsubscribe.records import ALWAYS as UNSUBSCRIBE_ALWAYS
from core.unsubscribe.records import NEVER as UNSUBSCRIBE_NEVER
from core.vocabulary import (
    ADDRESS_PREFERENCES,
    CONTACT_PREFERENCES,
    DEDUP_POLICIES,
    DEFINITION_KINDS,
    DOCUMENT_KIND_OF,
    DOCUMENT_KINDS,
    DOCUMENT_STATUSES,
    SECURITY_MODES,
    SERVICE_STATUSES,
    SUPPRESSION_REASONS,
    TRIGGER_TYPES,
)

Progress = Callable[[str, int, int], None]

ORGANISATION_ID = 1


@dataclass
class Row:
    """One row to store, with the JSON path it came from (for error messages)."""

    path: str
    values: dict[str, Any]


@dataclass
class ParsedFile:
    organisation: dict[str, Any] | None = None
    smtp_profiles: list[Row] = field(default_factory=list)
    billing_methods: list[Row] = field(default_factory=list)
    customers: list[Row] = field(default_factory=list)
    contacts: list[Row] = field(default_factory=list)
    addresses: list[Row] = field(default_factory=list)
    services: list[Row] = field(default_factory=list)
    documents: list[Row] = field(default_factory=list)
    suppressions: list[Row] = field(default_factory=list)
    definitions: list[Row] = field(default_factory=list)
    history: list[Row] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "smtp_profiles": len(self.smtp_profiles),
            "billing_methods": len(self.billing_methods),
            "customers": len(self.customers),
            "contacts": len(self.contacts),
            "addresses": len(self.addresses),
            "services": len(self.services),
            "documents": len(self.documents),
            "suppressions": len(self.suppressions),
            "definitions": len(self.definitions),
            "history": len(self.history),
        }


_ORDER = itertools.count()


class IdRegistry:
    """The ids of one kind read since the last check, each with its path.

    Whether an id was given twice in the file is decided when the batch is
    checked against the ids read before it (``core/interchange/ids.py``); the
    problem is then placed where it was noticed among the others
    (``position``: how many problems there were when the id was read).
    """

    def __init__(self, problems: list[Problem], noun: str) -> None:
        self.problems = problems
        self.noun = noun
        # (id, path, position, order): order keeps problems noticed at one position in turn.
        self.pending: list[tuple[str, str, int, int]] = []

    def add(self, ident: str | None, path: str) -> None:
        if ident is None:
            return
        self.pending.append((ident, path, len(self.problems), next(_ORDER)))


def decode(text: str | bytes) -> tuple[Any, list[Problem]]:
    """Parse JSON, turning a syntax error into a problem with line and column."""
    if isinstance(text, bytes):
        try:
            # utf-8-sig: a byte-order mark (as some editors on Windows write) is read past.
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            return None, [Problem("", f"not UTF-8 text: byte {error.start} cannot be decoded")]
    text = text.removeprefix("\ufeff")
    if not text.strip():
        return None, [Problem("", "the file is empty")]
    try:
        return json.loads(text, object_pairs_hook=object_pairs), []
    except json.JSONDecodeError as error:
        return None, [
            Problem("", f"not JSON: {error.msg} at line {error.lineno}, column {error.colno}")
        ]
    except RecursionError:
        return None, [Problem("", "not a msgrun file: JSON nested too deeply to read")]


def _organisation(r: Reader) -> dict[str, Any]:
    outbound = r.flags(
        "outbound", ("auto_send_invoices", "auto_send_payment_receipts", "auto_send_confirmations")
    )
    row = {
        "id": ORGANISATION_ID,
        "name": r.text("name", required=True, max_length=300),
        "timezone": r.timezone("timezone", required=True),
        "sender_verified": r.boolean("sender_verified", required=True),
        # An absent toggle means on.
        "auto_send_invoices": outbound.get("auto_send_invoices", True),
        "auto_send_payment_receipts": outbound.get("auto_send_payment_receipts", True),
        "auto_send_confirmations": outbound.get("auto_send_confirmations", True),
        "default_address_preferences": r.flags("default_address_preferences", ADDRESS_PREFERENCES),
        "default_contact_preferences": r.flags("default_contact_preferences", CONTACT_PREFERENCES),
        "documents_folder": files.documents_folder(r),
        "unsubscribe": _unsubscribe_settings(r),
    }
    r.finish()
    return row


def _unsubscribe_settings(r: Reader) -> dict[str, str] | None:
    """Where unsubscribe requests go (inbox.md): an https URL and/or an address."""
    settings = r.sub("unsubscribe", required=False)
    if settings is None:
        return None
    url = settings.text("url", max_length=400)
    address = settings.text("address", max_length=320)
    if url is not None and (not url.startswith("https://") or any(c.isspace() for c in url)):
        settings.problem("url", f"{url!r} is not an https URL")
        url = None
    if address is not None:
        if (problem := address_problem(address)) is not None:
            settings.problem("address", f"{address!r} is not a valid email address: {problem}")
            address = None
        elif len(address.rpartition("@")[0]) > 23:
            settings.problem(
                "address",
                f"the local part of {address!r} is over 23 characters (with +TOKEN it must fit 64)",
            )
            address = None
    settings.finish()
    value = {k: v for k, v in (("url", url), ("address", address)) if v is not None}
    return value or None


def _smtp_profile(r: Reader) -> dict[str, Any]:
    from_address = r.text("from_address", required=True, max_length=320)
    if from_address is not None and (problem := address_problem(from_address)) is not None:
        r.problem("from_address", f"{from_address!r} is not a valid email address: {problem}")
    bounce_address = r.text("bounce_address", max_length=320)
    if bounce_address is not None and (problem := address_problem(bounce_address)) is not None:
        r.problem("bounce_address", f"{bounce_address!r} is not a valid email address: {problem}")
        bounce_address = None
    elif bounce_address is not None and (
        len(bounce_address.rpartition("@")[0]) > MAX_BOUNCE_LOCAL_PART
    ):
        r.problem(
            "bounce_address",
            f"the local part of {bounce_address!r} is over {MAX_BOUNCE_LOCAL_PART} characters "
            f"(with +TOKEN naming the recipient it must fit {MAX_LOCAL_PART})",
        )
        bounce_address = None
    username = r.text("username", max_length=320)
    password_env = r.text("password_env", max_length=200)
    if (username is None) != (password_env is None) and r.ok:
        given, other = (
            ("username", "password_env")
            if username is not None
            else (
                "password_env",
                "username",
            )
        )
        r.problem(other, f"required when {given} is given (they go together)")
    row = {
        "id": r.ident("id"),
        "host": r.text("host", required=True, max_length=255),
        "port": r.integer("port", required=True, low=1, high=65535),
        "security": r.choice("security", SECURITY_MODES, required=True),
        "username": username,
        "password_env": password_env,
        "from_address": from_address,
        "from_name": r.text("from_name", max_length=300),
        "max_connections": r.integer("max_connections", low=1, high=1000, default=4),
        "rate_per_second": r.number("rate_per_second", positive=True),
        "tls_verify": r.boolean("tls_verify", default=True),
        "ca_file": r.text("ca_file"),
        "timeout_seconds": r.number("timeout_seconds", positive=True, default=30.0),
        "helo_name": _helo_name(r),
        "retry_after_seconds": _delays(r, "retry_after_seconds"),
        "retry_for_seconds": r.number("retry_for_seconds", positive=True),
        "bounce_address": bounce_address,
        "max_message_bytes": r.integer("max_message_bytes", low=1024, high=2**40),
        "reply_to": _reply_to(r),
        "dkim": _dkim(r, from_address),
        "server_signs_dkim": r.boolean("server_signs_dkim", default=False),
    }
    r.finish()
    return row


def _reply_to(r: Reader) -> str | None:
    """An optional Reply-To address, checked like from_address (inbox.md)."""
    reply_to = r.text("reply_to", max_length=320)
    if reply_to is not None and (problem := address_problem(reply_to)) is not None:
        r.problem("reply_to", f"{reply_to!r} is not a valid email address: {problem}")
        return None
    return reply_to


def _dkim(r: Reader, from_address: str | None) -> dict[str, Any] | None:
    """A profile's DKIM settings (inbox.md): where the key is, never the key."""
    dkim = r.sub("dkim", required=False)
    if dkim is None:
        return None
    domain = dkim.text("domain", required=True, max_length=253)
    selector = dkim.text("selector", required=True, max_length=63)
    key_file = dkim.text("private_key_file")
    key_env = dkim.text("private_key_env", max_length=200)
    algorithm = dkim.choice("algorithm", ALGORITHMS) or "rsa-sha256"
    for key in ("private_key", "private_key_pem", "key"):
        if key in dkim.obj:
            dkim.read.add(key)
            dkim.problem(
                key,
                "a private key is never in the interchange file: name a PEM file "
                "(private_key_file) or an environment variable (private_key_env)",
            )
    if (key_file is None) == (key_env is None) and dkim.ok:
        dkim.problem("", "needs exactly one of private_key_file or private_key_env")
    if selector is not None and (problem := hostname_problem(selector)) is not None:
        dkim.problem("selector", f"{selector!r} is not a DNS label: {problem}")
    if domain is not None:
        if (problem := hostname_problem(domain)) is not None or domain.startswith("["):
            dkim.problem("domain", f"{domain!r} is not a domain: {problem or 'an address'}")
            domain = None
        elif is_public_suffix(domain):
            dkim.problem("domain", f"{domain!r} is a public suffix, not a domain of one's own")
            domain = None
        elif from_address is not None and not aligned(domain, domain_of(from_address)):
            dkim.problem(
                "domain",
                f"{domain!r} does not align with the from_address domain "
                f"{domain_of(from_address)!r} (DMARC relaxed alignment: the same "
                "organisational domain)",
            )
            domain = None
    dkim.finish()
    if domain is None or selector is None:
        return None
    return DkimSettings(
        domain=domain.lower().rstrip("."),
        selector=selector,
        private_key_file=key_file,
        private_key_env=key_env,
        algorithm=algorithm,
    ).to_json()


HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def hostname_problem(name: str) -> str | None:
    """What makes ``name`` no host name (``mail.example.com``, or ``[192.0.2.1]``), or None."""
    if name.startswith("[") and name.endswith("]"):
        try:
            ipaddress.ip_address(name[1:-1].removeprefix("IPv6:"))
        except ValueError:
            return "not an address literal"
        return None
    if len(name) > 253:
        return "longer than 253 characters"
    bad = [label for label in name.removesuffix(".").split(".") if not HOST_LABEL.fullmatch(label)]
    if bad:
        return f"{bad[0]!r} is not a label of letters, digits and inner hyphens"
    return None


def _helo_name(r: Reader) -> str | None:
    name = r.text("helo_name", max_length=253)
    if name is not None and (problem := hostname_problem(name)) is not None:
        r.problem("helo_name", f"{name!r} is not a host name: {problem}")
        return None
    return name


def _delays(r: Reader, key: str) -> list[float] | None:
    """An optional non-empty list of positive numbers of seconds."""
    good: list[float] = []
    items = r.items(key)
    if r.obj.get(key) == []:
        r.problem(key, "must not be empty (leave it out for the default)")
        return None
    for path, value in items:
        if not isinstance(value, int | float) or isinstance(value, bool):
            r.problems.append(
                Problem(path, f"expected a number of seconds, got {type_name(value)}")
            )
        elif value <= 0:
            r.problems.append(Problem(path, f"must be greater than 0, got {value}"))
        else:
            good.append(float(value))
    return good if items and len(good) == len(items) else None


def _billing_method(r: Reader) -> dict[str, Any]:
    offsets: list[int] = []
    for path, value in r.items("send_rules"):
        rule = Reader(r.problems, path, value)
        offset = rule.integer("offset_days", required=True, low=-3650, high=3650)
        if offset is not None:
            offsets.append(offset)
        rule.finish()
    row = {
        "id": r.ident("id"),
        "name": r.text("name", required=True, max_length=300),
        "send_rule_offsets": offsets,
        "service_statuses_for_sending": r.choices("service_statuses_for_sending", SERVICE_STATUSES),
    }
    r.finish()
    return row


def _check_attribute_text(problems: list[Problem], path: str, value: Any) -> None:
    """Every text in a customer's attributes, at any depth, without the characters that
    names refuse (a tab and a line feed allowed in values): a template may put any of
    them in a Subject or a message."""
    if isinstance(value, str):
        if (char := control_character(value, allowed=ATTRIBUTE_ALLOWED)) is not None:
            problems.append(Problem(path, f"control character {char} not allowed"))
    elif isinstance(value, dict):
        for name, item in value.items():
            if (char := control_character(name)) is not None:
                problems.append(
                    Problem(join(path, name), f"control character {char} not allowed in a name")
                )
            else:
                _check_attribute_text(problems, join(path, name), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_attribute_text(problems, join(path, index), item)


def _customer(r: Reader, parsed: ParsedFile, ids: dict[str, IdRegistry]) -> None:
    customer_id = r.ident("id")
    attributes = r.raw("attributes", required=False)
    if attributes is not None and attributes is not MISSING and not isinstance(attributes, dict):
        r.problem("attributes", "expected an object")
        attributes = None
    elif isinstance(attributes, dict):
        _check_attribute_text(r.problems, r.at("attributes"), attributes)
    row = {
        "id": customer_id,
        "name": r.text("name", required=True, max_length=300),
        "cluster": r.text("cluster", max_length=200),
        "timezone": r.timezone("timezone"),
        "attributes": dict(attributes) if isinstance(attributes, dict) else {},
    }
    ids["customer"].add(customer_id, r.path)
    parsed.customers.append(Row(r.path, row))
    for position, (path, value) in enumerate(r.items("contacts")):
        _contact(Reader(r.problems, path, value), customer_id, position, parsed, ids)
    for path, value in r.items("services"):
        service = Reader(r.problems, path, value)
        service_id = service.ident("id")
        service_row = {
            "id": service_id,
            "customer_id": customer_id,
            "status": service.choice("status", SERVICE_STATUSES, required=True),
            "allow_billing_email": service.boolean("allow_billing_email", required=True),
        }
        service.finish()
        ids["service"].add(service_id, path)
        parsed.services.append(Row(path, service_row))
    r.finish()


def _contact(
    r: Reader,
    customer_id: str | None,
    position: int,
    parsed: ParsedFile,
    ids: dict[str, IdRegistry],
) -> None:
    contact_id = r.ident("id")
    preferences = r.flags("preferences", CONTACT_PREFERENCES)
    row: dict[str, Any] = {
        "id": contact_id,
        "customer_id": customer_id,
        "position": position,
        "name": r.text("name", required=True, max_length=300),
        "allow_email": r.boolean("allow_email", required=True),
    }
    for name in CONTACT_PREFERENCES:
        row[f"pref_{name}"] = preferences.get(name)
    ids["contact"].add(contact_id, r.path)
    parsed.contacts.append(Row(r.path, row))
    for index, (path, value) in enumerate(r.items("addresses")):
        address = Reader(r.problems, path, value)
        text = address.text("address", required=True, max_length=400)
        address_preferences = address.flags("preferences", ADDRESS_PREFERENCES)
        address_row: dict[str, Any] = {
            "contact_id": contact_id,
            "position": index,
            "customer_id": customer_id,
            "key": address.text("key", required=True, max_length=100),
            "address": text,
            "address_lower": fold(text) if text is not None else None,
            # An invalid address is data, not an import error: the planner
            # excludes it with `invalid_address` and says why.
            "problem": address_problem(text) if text is not None else None,
        }
        for name in ADDRESS_PREFERENCES:
            address_row[f"pref_{name}"] = address_preferences.get(name)
        address.finish()
        parsed.addresses.append(Row(path, address_row))
    r.finish()


def _document(r: Reader) -> dict[str, Any]:
    amount = r.text("amount", max_length=40)
    if amount is not None and not _is_decimal(amount):
        r.problem("amount", f'{amount!r} is not a decimal amount such as "129.90"')
    currency = r.text("currency", max_length=8)
    if currency is not None and not (
        len(currency) == 3 and currency.isalpha() and currency.isupper()
    ):
        r.problem("currency", f'{currency!r} is not an ISO 4217 code such as "EUR"')
    row = {
        "id": r.ident("id"),
        "kind": r.choice("kind", DOCUMENT_KINDS, required=True),
        "number": r.text("number", max_length=100),
        "status": r.choice("status", DOCUMENT_STATUSES, required=True),
        "customer_id": r.ident("customer"),
        "service_id": r.ident("service", required=False),
        "billing_method_id": r.ident("billing_method", required=False),
        "due_date": r.day("due_date"),
        "amount": amount,
        "currency": currency,
        "files": files.document_files(r),
    }
    r.finish()
    return row


def _is_decimal(text: str) -> bool:
    body = text[1:] if text[:1] == "-" else text
    whole, _, fraction = body.partition(".")
    return whole.isdigit() and (fraction == "" or fraction.isdigit()) and "." not in fraction


def _suppression(r: Reader) -> dict[str, Any]:
    address = r.text("address", required=True, max_length=400)
    row = {
        "address_lower": fold(address) if address is not None else None,
        "address": address,
        "reason": r.choice("reason", SUPPRESSION_REASONS, required=True),
        "since": r.day("since", required=True),
    }
    r.finish()
    return row


def _definition(r: Reader) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": r.ident("id"),
        "name": r.text("name", required=True, max_length=300),
        "kind": r.choice("kind", DEFINITION_KINDS, required=True),
        "address_key": r.text("address_key", required=True, max_length=100),
        "smtp_profile_id": r.ident("smtp_profile"),
        "clusters": r.strings("clusters"),
        "document_statuses": r.choices("document_statuses", DOCUMENT_STATUSES),
        "dedup": r.choice("dedup", DEDUP_POLICIES, required=True),
        "use_billing_rules": r.boolean("use_billing_rules", default=False),
        "trigger_type": None,
        "trigger_cron": None,
        "trigger_event": None,
        "trigger_enabled": True,
        "audience": None,
        "quiet_start": None,
        "quiet_end": None,
        "template_subject": None,
        "template_text": None,
        "template_html": None,
        "attach_document_files": False,
        "attachment_files": None,
        "reply_to": _reply_to(r),
        "unsubscribe": r.boolean("unsubscribe"),
    }
    if row["kind"] in UNSUBSCRIBE_ALWAYS and row["unsubscribe"] is False:
        r.problem("unsubscribe", f"{row['kind']} messages always offer unsubscribe")
    if row["kind"] in UNSUBSCRIBE_NEVER and row["unsubscribe"] is True:
        r.problem(
            "unsubscribe",
            f"a customer cannot opt out of {row['kind']} messages: they never offer unsubscribe",
        )
    trigger = r.sub("trigger", required=True)
    if trigger is not None:
        kind = trigger.choice("type", TRIGGER_TYPES, required=True)
        row["trigger_type"] = kind
        row["trigger_enabled"] = trigger.boolean("enabled", default=True)
        if kind == "routine":
            row["trigger_cron"] = trigger.cron("cron", required=True)
        elif kind == "event":
            row["trigger_event"] = trigger.text("event", required=True, max_length=200)
        trigger.finish()

    audience: list[dict[str, Any]] = []
    for path, value in r.items("audience"):
        clause = Reader(r.problems, path, value)
        attribute = clause.text("attribute", required=True, max_length=200)
        equals = clause.raw("equals", required=False)
        one_of = clause.raw("in", required=False)
        has_equals, has_in = equals is not MISSING, one_of is not MISSING
        if has_equals == has_in and clause.ok:
            clause.problem("", 'needs exactly one of "equals" or "in"')
        elif has_equals and not _is_scalar(equals):
            clause.problem("equals", "expected a string, number or boolean")
        elif has_in and (not isinstance(one_of, list) or not all(_is_scalar(v) for v in one_of)):
            clause.problem("in", "expected a list of strings, numbers or booleans")
        elif attribute is not None:
            audience.append(
                {"attribute": attribute, "equals": equals}
                if has_equals
                else {"attribute": attribute, "in": list(one_of)}
            )
        clause.finish()
    if r.obj.get("audience") is not None:
        row["audience"] = audience

    quiet = r.sub("quiet_hours", required=False)
    if quiet is not None:
        row["quiet_start"] = quiet.time_of_day("start", required=True)
        row["quiet_end"] = quiet.time_of_day("end", required=True)
        quiet.finish()

    template = r.sub("template", required=True)
    if template is not None:
        for key in ("subject", "text", "html"):
            source = template.text(
                key, required=key != "html", max_length=1_000_000, multiline=key != "subject"
            )
            if source is not None and (problem := _template_problem(row["kind"], source)):
                template.problem(key, problem)
            row[f"template_{key}"] = source
        row["attach_document_files"], row["attachment_files"] = files.template_attachments(
            template, row["kind"]
        )
        template.finish()
    r.finish()
    return row


def _template_problem(kind: str | None, source: str) -> str | None:
    """Why ``source`` cannot be a template of a definition of ``kind``: not valid
    Jinja, or it reads ``document`` where that kind plans over addresses alone
    (``reasons.md``), so that it would fail for every recipient."""
    if (problem := template_problem(source)) is not None:
        return problem
    if kind is None or DOCUMENT_KIND_OF.get(kind, "") is not None:
        return None
    if "document" not in names_used(source):
        return None
    return f"uses `document`, but a {kind} definition has none: it plans over addresses alone"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _history(r: Reader) -> dict[str, Any]:
    address = r.text("address", max_length=400)
    row = {
        "definition_id": r.ident("definition"),
        "customer_id": r.ident("customer"),
        "address": address,
        "address_lower": fold(address) if address is not None else None,
        "document_id": r.ident("document", required=False),
        "offset_days": r.integer("offset_days", low=-3650, high=3650),
        "at": r.instant("at", required=True),
        "run_id": None,
    }
    row["fingerprint"] = history_fingerprint(row)  # only when the row is whole (see r.finish)
    r.finish()
    return row
