"""The ordered pipeline: feedback report, DSN, auto-reply, non-standard bounce, else
not a report (after-sending.md, "Each message is classified")."""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message

from core.bounces import arf, autoreply, dsn, message, nonstandard
from core.bounces.model import Outcome, OutcomeType, Report, ReportKind

Detector = Callable[[Message, str], list[nonstandard.Failure]]


def classify(
    raw: bytes,
    envelope_to: str | None = None,
    *,
    detector: Detector | None = None,
) -> Report:
    """What the message is, and what it says about each recipient."""
    msg = message.parse(raw)
    common = {
        "delivered_to": message.delivered_to(msg, envelope_to),
        "date": message.report_date(msg),
        "message_id": message.normalise_message_id(message.header(msg, "Message-ID")),
    }

    # 1. A feedback report: abuse or fraud is a complaint; other types change nothing.
    feedback = arf.feedback_report(msg)
    if feedback is not None:
        original = message.original_message_id(msg)
        if feedback.feedback_type in arf.COMPLAINT_TYPES:
            detail = f"feedback report: {feedback.feedback_type}"
            if feedback.reporter:
                detail += f" ({feedback.reporter})"
            outcomes = tuple(
                Outcome(OutcomeType.COMPLAINT, None, None, addr, detail)
                for addr in (feedback.recipients or (None,))
            )
            return Report(ReportKind.COMPLAINT, outcomes, original, feedback_type=
                          feedback.feedback_type, why=detail, **common)  # type: ignore[arg-type]
        return Report(ReportKind.IGNORED, (), original, feedback_type=feedback.feedback_type,
                      why=f"feedback report of type {feedback.feedback_type}: changes nothing",
                      **common)  # type: ignore[arg-type]

    # 2. A DSN: one outcome per failed or delayed recipient block.
    if dsn.is_dsn(msg):
        blocks = dsn.recipient_blocks(msg)
        if blocks:
            outcomes_list: list[Outcome] = []
            for block in blocks:
                if block.action == "failed":
                    outcomes_list.append(Outcome(OutcomeType.BOUNCE, dsn.failure_class(block),
                                                 block.status, block.address, block.diagnostic))
                elif block.action == "delayed":
                    outcomes_list.append(Outcome(OutcomeType.DELAY, None, block.status,
                                                 block.address, block.diagnostic))
            original = message.original_message_id(msg)
            if outcomes_list:
                return Report(ReportKind.DSN, tuple(outcomes_list), original,
                              why="delivery status notification (RFC 3464)",
                              **common)  # type: ignore[arg-type]
            actions = sorted({b.action or "no action" for b in blocks})
            return Report(ReportKind.IGNORED, (), original,
                          why=f"delivery status notification: {', '.join(actions)}",
                          **common)  # type: ignore[arg-type]

    # 3. An auto-reply that does not come from a delivery system changes nothing.
    marker = autoreply.auto_reply_marker(msg)
    daemon = autoreply.from_delivery_system(msg)
    if marker and not daemon:
        return Report(ReportKind.AUTO_REPLY, why=f"automatic reply: {marker}",
                      **common)  # type: ignore[arg-type]

    # 4. A bounce in a format of its own.
    body = message.readable_text(msg)
    failures = (detector or nonstandard.detect)(msg, body)
    if failures:
        outcomes = tuple(
            Outcome(OutcomeType.BOUNCE, "hard" if f.permanent else "soft", f.status, f.address,
                    f.diagnostic)
            for f in failures
        )
        return Report(ReportKind.NONSTANDARD, outcomes, message.original_message_id(msg, body),
                      why="bounce in a non-standard format", **common)  # type: ignore[arg-type]
    if marker:
        # Marked as automatic and sent by a delivery system, yet no failure in it.
        return Report(ReportKind.AUTO_REPLY, why=f"automatic reply: {marker}",
                      **common)  # type: ignore[arg-type]

    # 5. Anything else.
    return Report(ReportKind.NOT_REPORT, why="not a report", **common)  # type: ignore[arg-type]
