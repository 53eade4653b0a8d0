"""What a read report says: its kind and one outcome per recipient."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class ReportKind(enum.StrEnum):
    COMPLAINT = "complaint"  # an ARF feedback report of type abuse or fraud
    DSN = "dsn"  # an RFC 3464 delivery status notification with failed/delayed blocks
    AUTO_REPLY = "auto_reply"  # an out-of-office or other automatic reply: changes nothing
    NONSTANDARD = "nonstandard_bounce"  # a bounce in a format of its own
    IGNORED = "ignored"  # a report that changes nothing (delivered DSN, other feedback)
    # A request mailed to the unsubscribe address, or a feedback report of type opt-out.
    UNSUBSCRIBE = "unsubscribe"
    NOT_REPORT = "not_report"  # anything else: left exactly where it was

    @property
    def is_report(self) -> bool:
        return self is not ReportKind.NOT_REPORT


class OutcomeType(enum.StrEnum):
    BOUNCE = "bounce"
    DELAY = "delay"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class Outcome:
    """What a report says about one recipient."""

    type: OutcomeType
    bounce_class: str | None  # "hard" or "soft" for a bounce, else None
    status: str | None  # RFC 3463 code ("5.1.1"), None when the report gives none
    address: str | None  # the address the report is about, when it names one
    diagnostic: str | None  # the server's words (Diagnostic-Code, the failure line)


@dataclass(frozen=True)
class Report:
    """A classified message."""

    kind: ReportKind
    outcomes: tuple[Outcome, ...] = ()
    # The Message-ID of the original message returned inside the report
    # (never the report's own Message-ID or In-Reply-To).
    original_message_id: str | None = None
    # Where the report was delivered: Delivered-To, X-Original-To, To, envelope-to.
    delivered_to: tuple[str, ...] = ()
    date: datetime | None = None  # the report's Date, in UTC
    message_id: str | None = None  # the report's own Message-ID
    feedback_type: str | None = None  # for feedback reports
    why: str = ""  # a sentence: what made it this kind
    extra: dict[str, str] = field(default_factory=dict)
