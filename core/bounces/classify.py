"""The ordered pipeline: feedback report, DSN, auto-reply, non-standard bounce, else
not a report (after-sending.md, "Each message is classified")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from email.message import Message

from core.bounces import arf, autoreply, dsn, message, nonstandard, ses
from core.bounces.model import Outcome, OutcomeType, Report, ReportKind

Detector = Callable[[Message, str], list[nonstandard.Failure]]

_UNCHANGING_ACTIONS = ("delivered", "relayed", "expanded", "deliverable")

# What a report may make msgrun store and print of its fields: a report is written
# by anyone, and a 200 KB Final-Recipient is no address. An address longer than
# SMTP allows (RFC 5321: 64 + 1 + 255) is none; words are cut.
MAX_ADDRESS = 320
MAX_MESSAGE_ID = 998  # a header line (RFC 5322)
MAX_DIAGNOSTIC = 1000
MAX_WORDS = 300  # why it was read so, a feedback type, a status


def clipped(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters (an ellipsis saying so)."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _fits(address: str | None) -> str | None:
    return address if address is None or len(address) <= MAX_ADDRESS else None


def bounded(report: Report) -> Report:
    """``report`` with every field it got from the message within its bound."""
    outcomes = tuple(
        replace(
            o,
            status=o.status if o.status is None or len(o.status) <= MAX_WORDS else None,
            address=_fits(o.address),
            diagnostic=clipped(o.diagnostic, MAX_DIAGNOSTIC),
        )
        for o in report.outcomes
    )
    original = report.original_message_id
    own = report.message_id
    return replace(
        report,
        outcomes=outcomes,
        original_message_id=original if original and len(original) <= MAX_MESSAGE_ID else None,
        message_id=own if own and len(own) <= MAX_MESSAGE_ID else None,
        delivered_to=tuple(a for a in report.delivered_to if _fits(a)),
        feedback_type=clipped(report.feedback_type, MAX_WORDS),
        why=clipped(report.why, MAX_WORDS) or "",
        extra={k: clipped(v, MAX_DIAGNOSTIC) or "" for k, v in report.extra.items()},
    )


def classify(
    raw: bytes,
    envelope_to: str | None = None,
    *,
    detector: Detector | None = None,
) -> Report:
    """What the message is, and what it says about each recipient.

    `detector` replaces the non-standard bounce detection (the benchmark measures
    the library alone with it)."""
    msg = message.parse(raw)
    targets = message.delivered_to(msg, envelope_to)
    date = message.report_date(msg)
    own_id = message.normalise_message_id(message.header(msg, "Message-ID"))

    def report(
        kind: ReportKind,
        why: str,
        outcomes: tuple[Outcome, ...] = (),
        original: str | None = None,
        feedback_type: str | None = None,
    ) -> Report:
        return bounded(
            Report(
                kind=kind,
                outcomes=outcomes,
                original_message_id=original,
                delivered_to=targets,
                date=date,
                message_id=own_id,
                feedback_type=feedback_type,
                why=why,
            )
        )

    # 1. A feedback report: abuse or fraud is a complaint; other types change nothing.
    feedback = arf.feedback_report(msg)
    if feedback is not None:
        original = message.original_message_id(msg)
        if feedback.feedback_type == "opt-out":  # inbox.md: an unsubscribe
            detail = "feedback report: opt-out" + (
                f" ({feedback.reporter})" if feedback.reporter else ""
            )
            outcomes = tuple(
                Outcome(OutcomeType.UNSUBSCRIBE, None, None, addr, detail)
                for addr in (feedback.recipients or (None,))
            )
            return report(ReportKind.UNSUBSCRIBE, detail, outcomes, original, "opt-out")
        if feedback.feedback_type in arf.COMPLAINT_TYPES:
            detail = f"feedback report: {feedback.feedback_type}"
            if feedback.reporter:
                detail += f" ({feedback.reporter})"
            outcomes = tuple(
                Outcome(OutcomeType.COMPLAINT, None, None, addr, detail)
                for addr in (feedback.recipients or (None,))
            )
            return report(ReportKind.COMPLAINT, detail, outcomes, original, feedback.feedback_type)
        return report(
            ReportKind.IGNORED,
            f"feedback report of type {feedback.feedback_type}: changes nothing",
            (),
            original,
            feedback.feedback_type,
        )

    # 2. A DSN: one outcome per failed or delayed recipient block.
    if dsn.is_dsn(msg):
        blocks = dsn.recipient_blocks(msg)
        if blocks:
            found: list[Outcome] = []
            for block in blocks:
                # An action other than those of RFC 3464 (`expired`) is a failure too.
                failed = (
                    block.action not in (*_UNCHANGING_ACTIONS, "delayed")
                    and not (block.status or "").startswith("2")
                    and (block.action != "" or (block.status or "")[:1] in ("4", "5"))
                )
                if failed:
                    bounce_class = dsn.failure_class(block)
                    if block.action == "expired" and not block.status:
                        bounce_class = "soft"  # given up after retrying: a temporary failure
                    found.append(
                        Outcome(
                            OutcomeType.BOUNCE,
                            bounce_class,
                            block.status,
                            block.address,
                            block.diagnostic,
                        )
                    )
                elif block.action == "delayed":
                    found.append(
                        Outcome(
                            OutcomeType.DELAY, None, block.status, block.address, block.diagnostic
                        )
                    )
            original = message.original_message_id(msg)
            if found:
                return report(
                    ReportKind.DSN,
                    "delivery status notification (RFC 3464)",
                    tuple(found),
                    original,
                )
            actions = ", ".join(sorted({b.action or "no action" for b in blocks}))
            return report(
                ReportKind.IGNORED,
                f"delivery status notification: {actions}: changes nothing",
                (),
                original,
            )

    # 3. An auto-reply that does not come from a delivery system changes nothing.
    marker = autoreply.auto_reply_marker(msg)
    if marker and not autoreply.from_delivery_system(msg):
        return report(ReportKind.AUTO_REPLY, f"automatic reply: {marker}")

    body = message.readable_text(msg)
    # Amazon SES notifications by email: a complaint, a bounce, or a delivery.
    notification = ses.ses_notification(body) if detector is None else None
    if notification is not None:
        return _ses_report(notification, report, message.original_message_id(msg, body))

    # 4. A bounce in a format of its own.
    failures = (detector or nonstandard.detect)(msg, body)
    if failures:
        outcomes = tuple(
            Outcome(
                OutcomeType.BOUNCE,
                "hard" if f.permanent else "soft",
                f.status,
                f.address,
                f.diagnostic,
            )
            for f in failures
        )
        return report(
            ReportKind.NONSTANDARD,
            "bounce in a non-standard format",
            outcomes,
            message.original_message_id(msg, body),
        )
    if marker:
        # Marked automatic and sent by a delivery system, yet no failure in it.
        return report(ReportKind.AUTO_REPLY, f"automatic reply: {marker}")

    # 5. Anything else.
    return report(ReportKind.NOT_REPORT, "not a report")


def _ses_report(
    notification: ses.SesNotification,
    report: Callable[..., Report],
    original: str | None,
) -> Report:
    if notification.type == "complaint":
        ftype = notification.detail.rsplit(": ", 1)[-1].lower()
        if ftype not in arf.COMPLAINT_TYPES:
            return report(ReportKind.IGNORED, notification.detail, (), original, ftype)
        outcomes = tuple(
            Outcome(OutcomeType.COMPLAINT, None, None, r.address, notification.detail)
            for r in notification.recipients
        )
        return report(ReportKind.COMPLAINT, notification.detail, outcomes, original, ftype)
    if notification.type == "bounce" and notification.recipients:
        outcomes = tuple(
            Outcome(
                OutcomeType.BOUNCE,
                _class(r.status, notification.permanent),
                r.status,
                r.address,
                r.diagnostic,
            )
            for r in notification.recipients
        )
        return report(ReportKind.NONSTANDARD, notification.detail, outcomes, original)
    return report(ReportKind.IGNORED, f"{notification.detail}: changes nothing", (), original)


def _class(status: str | None, permanent: bool) -> str:
    if status and status[0] in "45":
        return "hard" if status[0] == "5" else "soft"
    return "hard" if permanent else "soft"
