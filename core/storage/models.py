"""The stored entities of ``domain.md``, as SQLAlchemy 2 typed models.

Conventions:
- ids are the strings of the interchange file (``IdString``);
- a preference that was not given is NULL, never a guessed value, so the
  planner can say "unset, so the organisation's default applies";
- instants are ``UTCDateTime`` (aware in Python, naive UTC in the database);
- addresses are kept exactly as imported, with ``address_lower`` beside them
  for the case-insensitive comparisons every rule makes.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.storage.types import IdString, JsonValue, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, for set-based statements."""
    table: Table = model.__table__  # type: ignore[assignment]
    return table


class Organisation(Base):
    """The sending business. There is one per database (``id`` is always 1)."""

    __tablename__ = "organisation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    timezone: Mapped[str] = mapped_column(String(64))
    sender_verified: Mapped[bool] = mapped_column(Boolean)
    auto_send_invoices: Mapped[bool] = mapped_column(Boolean)
    auto_send_payment_receipts: Mapped[bool] = mapped_column(Boolean)
    auto_send_confirmations: Mapped[bool] = mapped_column(Boolean)
    # Only the defaults that were given: {"invoices": false, ...}.
    default_address_preferences: Mapped[dict[str, bool]] = mapped_column(JsonValue)
    default_contact_preferences: Mapped[dict[str, bool]] = mapped_column(JsonValue)
    # The folder documents' files are relative to (attachments.md); None: no files.
    documents_folder: Mapped[str | None] = mapped_column(Text)
    # Where unsubscribe requests go (inbox.md): {"url": ..., "address": ...}.
    unsubscribe: Mapped[dict[str, str] | None] = mapped_column(JsonValue)


class SmtpProfile(Base):
    __tablename__ = "smtp_profile"

    id: Mapped[str] = mapped_column(IdString, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(16))
    username: Mapped[str | None] = mapped_column(String(320))
    # The name of the environment variable that holds the password: never the password.
    password_env: Mapped[str | None] = mapped_column(String(200))
    from_address: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(300))
    max_connections: Mapped[int] = mapped_column(Integer)
    rate_per_second: Mapped[float | None] = mapped_column(Float)
    tls_verify: Mapped[bool] = mapped_column(Boolean)
    ca_file: Mapped[str | None] = mapped_column(Text)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    # The EHLO name (None: the machine's FQDN when it has a dot, else the from_address domain).
    helo_name: Mapped[str | None] = mapped_column(String(255))
    # Delays between tries of a postponed message, and how long to keep trying
    # (None: the defaults of domain.md, Retries).
    retry_after_seconds: Mapped[list[float] | None] = mapped_column(JsonValue)
    retry_for_seconds: Mapped[float | None] = mapped_column(Float)
    # Where reports should come back (after-sending.md); stored only, for now.
    bounce_address: Mapped[str | None] = mapped_column(String(320))
    # DKIM signing (inbox.md): where the key is (a file or an environment variable),
    # never the key.
    dkim: Mapped[dict[str, Any] | None] = mapped_column(JsonValue)
    server_signs_dkim: Mapped[bool] = mapped_column(Boolean, default=False)
    reply_to: Mapped[str | None] = mapped_column(String(320))
    # The last smtp test's sender authentication steps: {"at", "sender_auth_ok", "steps"}.
    last_sender_auth: Mapped[dict[str, Any] | None] = mapped_column(JsonValue)
    # Written by ``msgrun smtp test``; the plan warns about a profile never tested.
    last_test_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_test_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The largest message the server takes, as configured, and as its EHLO's SIZE
    # last announced it (``smtp test``); the smaller is the limit (attachments.md).
    max_message_bytes: Mapped[int | None] = mapped_column(BigInteger)
    server_size: Mapped[int | None] = mapped_column(BigInteger)


class BillingMethod(Base):
    __tablename__ = "billing_method"

    id: Mapped[str] = mapped_column(IdString, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    # Day offsets from the due date on which a document is sent: [-3, 0, 7].
    send_rule_offsets: Mapped[list[int]] = mapped_column(JsonValue)
    # None: every status except inactive and cancelled (reasons.md rule 12).
    service_statuses_for_sending: Mapped[list[str] | None] = mapped_column(JsonValue)


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[str] = mapped_column(IdString, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    cluster: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonValue)


class Contact(Base):
    __tablename__ = "contact"

    id: Mapped[str] = mapped_column(IdString, primary_key=True)
    customer_id: Mapped[str] = mapped_column(
        IdString, ForeignKey("customer.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    allow_email: Mapped[bool] = mapped_column(Boolean)
    pref_send_invoice_reminders: Mapped[bool | None] = mapped_column(Boolean)
    pref_send_service_reminders: Mapped[bool | None] = mapped_column(Boolean)
    pref_email_confirmations_all_jobs: Mapped[bool | None] = mapped_column(Boolean)
    pref_exclude_from_broadcasts: Mapped[bool | None] = mapped_column(Boolean)


class Address(Base):
    """An email address of a contact, filed under a key, as imported."""

    __tablename__ = "address"
    # Planning reads a page of customers' addresses under one key: a range of
    # this index (the contact's customer, kept here for exactly that).
    __table_args__ = (Index("ix_address_customer_key", "customer_id", "key"),)

    contact_id: Mapped[str] = mapped_column(
        IdString, ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(
        IdString, ForeignKey("customer.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(400))
    address_lower: Mapped[str] = mapped_column(String(400), index=True)
    # Why the address is not a valid email address, or None when it is. Decided
    # once, when the address is written (core.addresses.address_problem).
    problem: Mapped[str | None] = mapped_column(Text)
    pref_invoices: Mapped[bool | None] = mapped_column(Boolean)
    pref_payment_receipts: Mapped[bool | None] = mapped_column(Boolean)
    pref_confirmations: Mapped[bool | None] = mapped_column(Boolean)
    pref_status_updates: Mapped[bool | None] = mapped_column(Boolean)


class Service(Base):
    __tablename__ = "service"

    id: Mapped[str] = mapped_column(IdString, primary_key=True)
    customer_id: Mapped[str] = mapped_column(
        IdString, ForeignKey("customer.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    allow_billing_email: Mapped[bool] = mapped_column(Boolean)


class Document(Base):
    __tablename__ = "document"
    __table_args__ = (Index("ix_document_customer_kind", "customer_id", "kind"),)

    id: Mapped[str] = mapped_column(IdString, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    number: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(IdString, ForeignKey("customer.id"))
    service_id: Mapped[str | None] = mapped_column(IdString, ForeignKey("service.id"))
    billing_method_id: Mapped[str | None] = mapped_column(IdString, ForeignKey("billing_method.id"))
    due_date: Mapped[date | None] = mapped_column(Date)
    amount: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str | None] = mapped_column(String(8))
    # [{"path", "name", "content_type"}] relative to the documents folder; None: none.
    files: Mapped[list[dict[str, str]] | None] = mapped_column(JsonValue)


class Suppression(Base):
    """An address that must not be mailed; one entry per address, whatever its case."""

    __tablename__ = "suppression"

    address_lower: Mapped[str] = mapped_column(String(400), primary_key=True)
    address: Mapped[str] = mapped_column(String(400))
    reason: Mapped[str] = mapped_column(String(32))
    since: Mapped[date] = mapped_column(Date)
    # A suppression that came from a report names it, its run and the server's words.
    report_id: Mapped[int | None] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class Definition(Base):
    """A message definition: what to send and to whom."""

    __tablename__ = "definition"

    id: Mapped[str] = mapped_column(IdString, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(32))
    address_key: Mapped[str] = mapped_column(String(100))
    smtp_profile_id: Mapped[str] = mapped_column(IdString, ForeignKey("smtp_profile.id"))
    trigger_type: Mapped[str] = mapped_column(String(16))
    trigger_cron: Mapped[str | None] = mapped_column(String(200))
    trigger_event: Mapped[str | None] = mapped_column(String(200))
    trigger_enabled: Mapped[bool] = mapped_column(Boolean)
    clusters: Mapped[list[str] | None] = mapped_column(JsonValue)
    document_statuses: Mapped[list[str] | None] = mapped_column(JsonValue)
    # [{"attribute": "photos_available", "equals": true}, {"attribute": "x", "in": [..]}]
    audience: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonValue)
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    dedup: Mapped[str] = mapped_column(String(16))
    use_billing_rules: Mapped[bool] = mapped_column(Boolean)
    template_subject: Mapped[str] = mapped_column(Text)
    template_text: Mapped[str] = mapped_column(Text)
    template_html: Mapped[str | None] = mapped_column(Text)
    # template.attachments: attach the document's files, and these paths to every message.
    attach_document_files: Mapped[bool] = mapped_column(Boolean, default=False)
    attachment_files: Mapped[list[str] | None] = mapped_column(JsonValue)
    # Wins over the profile's reply_to (inbox.md).
    reply_to: Mapped[str | None] = mapped_column(String(320))
    # Whether its messages offer unsubscribe (None: the kind's default, inbox.md).
    unsubscribe: Mapped[bool | None] = mapped_column(Boolean)


class History(Base):
    """An earlier send or trigger target: the dedup ledger (rules 16 and 17)."""

    __tablename__ = "history"
    __table_args__ = (
        Index("ix_history_definition_customer", "definition_id", "customer_id"),
        Index("ix_history_definition_document", "definition_id", "document_id"),
        UniqueConstraint("fingerprint"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    definition_id: Mapped[str] = mapped_column(IdString, ForeignKey("definition.id"))
    customer_id: Mapped[str] = mapped_column(IdString, ForeignKey("customer.id"))
    address: Mapped[str | None] = mapped_column(String(400))
    address_lower: Mapped[str | None] = mapped_column(String(400))
    document_id: Mapped[str | None] = mapped_column(IdString, ForeignKey("document.id"))
    offset_days: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The run that wrote it; None for imported history.
    run_id: Mapped[int | None] = mapped_column(Integer)
    # The same entry imported twice is stored once (NULLs defeat a plain
    # multi-column unique constraint, so the columns are folded into one key);
    # a run's send of a recipient is keyed by the two (``ledger.send_key``).
    fingerprint: Mapped[str] = mapped_column(String(64))


class MessageRun(Base):
    """One execution of a definition: its audience snapshot lives in its recipients."""

    __tablename__ = "message_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    definition_id: Mapped[str] = mapped_column(IdString, ForeignKey("definition.id"), index=True)
    smtp_profile_id: Mapped[str] = mapped_column(IdString, ForeignKey("smtp_profile.id"))
    state: Mapped[str] = mapped_column(String(32), index=True)
    # The instant the plan was made for (``--at``).
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_by: Mapped[str] = mapped_column(String(200))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_requested_by: Mapped[str | None] = mapped_column(String(200))
    # Why the run failed (a run-level fault), or what the last process said.
    error: Mapped[str | None] = mapped_column(Text)
    # The process delivering the run, and until when its lease holds.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Part of every recipient's Message-ID, so ids are unique across databases.
    message_token: Mapped[str] = mapped_column(String(32))
    # The run this one follows up (``msgrun run follow-up``), else NULL.
    follow_up_of: Mapped[int | None] = mapped_column(Integer, index=True)


class RunCount(Base):
    """How many of a run's recipients are in each state, kept with every transition.

    The count of a state is the sum over its shards: each delivering process
    moves its own shard's rows, so workers sharing a run never wait on each
    other's counter locks (shard 0 holds the counts the run was made with).
    """

    __tablename__ = "run_count"

    run_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("message_run.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    n: Mapped[int] = mapped_column(Integer)


def due_index(name: str, due_column: str, state: str) -> Index:
    """A partial index of one state's recipients by when they are due, then plan order."""
    where = text(f"state = '{state}'")
    return Index(name, "run_id", due_column, "position", sqlite_where=where, postgresql_where=where)


class Recipient(Base):
    """One (customer, address, document) of a run: its decision and its delivery."""

    __tablename__ = "recipient"
    __table_args__ = (
        UniqueConstraint("run_id", "position"),
        Index("ix_recipient_run_state_position", "run_id", "state", "position"),
        Index("ix_recipient_run_customer", "run_id", "customer_id"),
        Index("ix_recipient_claimed_by", "claimed_by"),
        # The held and the retrying recipients by when they are due: the next due ones
        # are found without reading those that are not (a run holding a million overnight).
        due_index("ix_recipient_held_due", "send_after", "held"),
        due_index("ix_recipient_retrying_due", "next_attempt_at", "retrying"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("message_run.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[str] = mapped_column(IdString)
    contact_id: Mapped[str | None] = mapped_column(IdString)
    address: Mapped[str | None] = mapped_column(String(400))
    document_id: Mapped[str | None] = mapped_column(IdString)
    # The document label when the run planned it ("Concept" for a draft).
    label: Mapped[str | None] = mapped_column(String(100))
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JsonValue)
    send_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Days from the due date when planned (billing-rule definitions), for the ledger.
    offset_days: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    # What went wrong that is not an SMTP reply (a template error, a refused connection).
    error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The first time a message to it was tried: retries end retry_for_seconds after.
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The delivering process (a ``worker`` row) that has reserved this recipient
    # (``queries.reserve_due``): set when it takes it in a batch, until its result is
    # recorded or it gives it back. (The column keeps its old name, ``claimed_by``.)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    # The follow-up run this recipient was handed on to: this run never sends it again.
    handed_on_to: Mapped[int | None] = mapped_column(Integer)
    # What its message carried: [{"name", "bytes", "sha256"}] (None: nothing yet).
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonValue)


class RecipientAttempt(Base):
    """One delivery attempt of a recipient: when, the server's reply (or the connection
    fault, ``smtp_code`` NULL), and whether it settled the recipient (sent, failed, unknown)."""

    __tablename__ = "recipient_attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("recipient.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    # The reply's text after its code, or the fault's description.
    reply: Mapped[str | None] = mapped_column(Text)
    settled: Mapped[bool] = mapped_column(Boolean)


class Worker(Base):
    """A live delivering process: a ``msgrun worker`` or a ``run start``/``restart``.

    Alive while ``expires_at`` (database clock) is ahead; it renews it every
    few seconds. What a worker whose lease lapsed had reserved goes back to the pool,
    and its ``sending`` recipients become ``unknown``.
    """

    __tablename__ = "worker"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class RunShare(Base):
    """A worker taking part in delivering a run (the profile's connections are shared out)."""

    __tablename__ = "run_share"

    run_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("message_run.id", ondelete="CASCADE"), primary_key=True
    )
    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    profile_id: Mapped[str] = mapped_column(IdString, index=True)


class ProfileSlot(Base):
    """One of a profile's ``max_connections``: held by one worker's sender at a time."""

    __tablename__ = "profile_slot"

    profile_id: Mapped[str] = mapped_column(
        IdString, ForeignKey("smtp_profile.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[int | None] = mapped_column(Integer)


class DedupKeyHolder(Base):
    """Who holds one dedup key of a definition, so that it is never sent twice across runs
    (the table keeps its old name, ``send_claim``).

    ``key`` is the document, address (lower-cased) and billing offset of a
    ``per_document`` definition, or the customer of a ``per_trigger`` one.
    A run marking a recipient ``sending`` takes the key's row (locked, in the
    same transaction); a recipient of another run finding it held by a
    recipient that is sent, sending, retrying or unknown is not sent.
    """

    __tablename__ = "send_claim"

    definition_id: Mapped[str] = mapped_column(IdString, primary_key=True)
    key: Mapped[str] = mapped_column(String(800), primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer)
    recipient_id: Mapped[int] = mapped_column(Integer)


class TriggerFire(Base):
    """One firing of a routine's schedule or of an event, and what came of it.

    ``fire_key`` is unique: a routine's fire time is recorded once however many
    workers see it, and only the worker whose record went in starts the run.
    """

    __tablename__ = "trigger_fire"
    __table_args__ = (
        UniqueConstraint("fire_key"),
        Index("ix_trigger_fire_definition_scheduled", "definition_id", "scheduled_for"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fire_key: Mapped[str] = mapped_column(String(400))
    definition_id: Mapped[str] = mapped_column(
        IdString, ForeignKey("definition.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))  # routine | event
    event: Mapped[str | None] = mapped_column(String(200))
    # The schedule's fire time (routine) or the instant the event was fired for.
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # started, late, skipped, blocked or failed.
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(Integer)


class RoutineWatch(Base):
    """How far the workers have looked at a routine's schedule (fires after this are due)."""

    __tablename__ = "routine_watch"

    definition_id: Mapped[str] = mapped_column(
        IdString, ForeignKey("definition.id", ondelete="CASCADE"), primary_key=True
    )
    # The schedule watched: when the definition's cron changes, the watch starts again.
    cron: Mapped[str] = mapped_column(String(200))
    checked_until: Mapped[datetime] = mapped_column(UTCDateTime)


class BounceReport(Base):
    """A report read back (after-sending.md): stored once, raw bytes kept."""

    __tablename__ = "bounce_report"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Its Message-ID, or "sha256:HEX" of its bytes when it has none: read once.
    message_key: Mapped[str] = mapped_column(String(400), unique=True)
    source: Mapped[str] = mapped_column(Text)
    # complaint, dsn, auto_reply, nonstandard_bounce, ignored, not_report
    kind: Mapped[str] = mapped_column(String(32))
    why: Mapped[str] = mapped_column(Text)
    feedback_type: Mapped[str | None] = mapped_column(String(64))
    original_message_id: Mapped[str | None] = mapped_column(String(300))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    read_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The report's Date, else when it was read.
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RecipientOutcome(Base):
    """What one report says about one recipient; recipient NULL when unmatched."""

    __tablename__ = "recipient_outcome"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("bounce_report.id", ondelete="CASCADE"), index=True
    )
    recipient_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("recipient.id", ondelete="SET NULL"), index=True
    )
    address: Mapped[str | None] = mapped_column(String(400))
    type: Mapped[str] = mapped_column(String(16))  # bounce, delay, complaint
    bounce_class: Mapped[str | None] = mapped_column(String(8))  # hard, soft
    status: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    matched_by: Mapped[str | None] = mapped_column(String(16))  # message_id, verp, address


class MsgrunSecret(Base):
    """Secrets of the database itself, made by the migrations (the unsubscribe tokens'
    HMAC key): never imported, exported or printed."""

    __tablename__ = "msgrun_secret"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class Unsubscribe(Base):
    """An unsubscribe msgrun recorded (inbox.md): the preference it turned off, applied
    on top of the imported preferences, so that an import does not subscribe again."""

    __tablename__ = "unsubscribe"
    __table_args__ = (UniqueConstraint("contact_id", "address_lower", "preference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(400))
    address_lower: Mapped[str] = mapped_column(String(400))
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    contact_id: Mapped[str] = mapped_column(String(200))
    preference: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    how: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
