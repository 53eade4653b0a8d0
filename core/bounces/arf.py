"""RFC 5965 feedback reports (ARF): complaints from a feedback loop."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from core.bounces.message import address_of, decode, header, payload_text, returned_headers

FEEDBACK_TYPES = ("message/feedback-report",)
COMPLAINT_TYPES = ("abuse", "fraud")


@dataclass(frozen=True)
class FeedbackReport:
    feedback_type: str
    recipients: tuple[str, ...]
    reporter: str | None  # User-Agent or Reporting-MTA


def _fields(part: Message) -> Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        merged = Message()
        for block in payload:
            if isinstance(block, Message):
                for key, value in block.items():
                    merged[key] = value
        if merged.keys():
            return merged
    return HeaderParser().parsestr(payload_text(part).lstrip())


def feedback_report(msg: Message) -> FeedbackReport | None:
    """The feedback report in the message, or None when it holds none."""
    part = next((p for p in msg.walk() if p.get_content_type() in FEEDBACK_TYPES), None)
    if part is None:
        return _jmrp(msg)
    fields = _fields(part)
    ftype = decode(fields.get("Feedback-Type", "")).strip().lower() or "other"
    recipients: list[str] = []
    for value in fields.get_all("Original-Rcpt-To") or []:
        addr = address_of(decode(value))
        if addr and addr not in recipients:
            recipients.append(addr)
    if not recipients:
        original = returned_headers(msg)
        if original is not None:
            addr = address_of(header(original, "To"))
            if addr:
                recipients.append(addr)
    reporter = decode(fields.get("User-Agent", "")) or decode(fields.get("Reporting-MTA", ""))
    return FeedbackReport(ftype, tuple(recipients), reporter or None)


def _jmrp(msg: Message) -> FeedbackReport | None:
    """Microsoft's JMRP complaints (Hotmail, Outlook.com): not ARF, but the returned
    message carries X-HmXmrOriginalRecipient, the address that complained."""
    original = returned_headers(msg)
    if original is None:
        return None
    recipient = header(original, "X-HmXmrOriginalRecipient")
    if not recipient:
        return None
    addr = address_of(recipient)
    return FeedbackReport("abuse", (addr,) if addr else (), "Microsoft JMRP")
