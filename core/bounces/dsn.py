"""RFC 3464 delivery status notifications: one block per recipient."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from core.bounces.message import address_of, decode, payload_text

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"(?:^|[\s;:(])([245])\d\d[\s-]")
DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")


@dataclass(frozen=True)
class RecipientBlock:
    action: str  # failed, delayed, delivered, relayed, expanded ("" when absent)
    status: str | None
    final_recipient: str | None
    original_recipient: str | None
    diagnostic: str | None
    # A Status field that gives no RFC 3463 code (9.9.9, "failed"): says nothing
    # of permanence, so the failure is not taken as a hard bounce.
    status_unreadable: bool = False

    @property
    def address(self) -> str | None:
        return self.final_recipient or self.original_recipient


def find_status(text: str) -> str | None:
    m = _STATUS.search(text)
    return ".".join(m.groups()) if m else None


def reply_class(text: str) -> str | None:
    """The first digit of an SMTP reply code at the start of the text, if any."""
    m = _REPLY.search(" " + text + " ")
    return m.group(1) if m else None


def is_dsn(msg: Message) -> bool:
    return any(part.get_content_type() in DSN_TYPES for part in msg.walk())


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list) and all(isinstance(p, Message) for p in payload):
        blocks = [p for p in payload if isinstance(p, Message)]
        # A transfer-encoded delivery-status is parsed as one block of nothing.
        if any(len(b.keys()) for b in blocks):
            return blocks
    text = payload_text(part)
    if not text:
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    text = text.replace("\r\n", "\n").lstrip("\n")
    parser = HeaderParser()
    return [
        parser.parsestr(chunk.strip("\n") + "\n")
        for chunk in re.split(r"\n[ \t]*\n", text)
        if chunk.strip()
    ]


def block_from_fields(block: Message) -> RecipientBlock | None:
    """A per-recipient block from its fields; None for the per-message block."""
    final = decode(block.get("Final-Recipient", ""))
    original = decode(block.get("Original-Recipient", ""))
    action = decode(block.get("Action", "")).lower().split(" ")[0] if block.get("Action") else ""
    if not (final or original or action):
        return None
    diagnostic = decode(block.get("Diagnostic-Code", ""))
    if ";" in diagnostic[:12]:
        diagnostic = diagnostic.split(";", 1)[1].strip()
    given = decode(block.get("Status", ""))
    status = find_status(given) or None
    unreadable = bool(given) and status is None
    if status is None and diagnostic:
        status = find_status(diagnostic)
    if not action and status:
        action = {"5": "failed", "4": "delayed", "2": "delivered"}[status[0]]
    return RecipientBlock(
        action=action,
        status=status,
        final_recipient=address_of(final) if final else None,
        original_recipient=address_of(original) if original else None,
        diagnostic=diagnostic or None,
        status_unreadable=unreadable,
    )


def recipient_blocks(msg: Message) -> list[RecipientBlock]:
    """Every per-recipient block of every delivery-status part."""
    found: list[RecipientBlock] = []
    for part in msg.walk():
        if part.get_content_type() not in DSN_TYPES:
            continue
        for block in _blocks(part):
            parsed = block_from_fields(block)
            if parsed is not None:
                found.append(parsed)
    return found


_TEXT_BLOCK = re.compile(r"^[ \t]*(?:Final-Recipient|Action)[ \t]*:", re.IGNORECASE | re.MULTILINE)


def text_blocks(text: str) -> list[RecipientBlock]:
    """Delivery-status fields written into the readable text (some MTAs do)."""
    if not _TEXT_BLOCK.search(text):
        return []
    parser = HeaderParser()
    found: list[RecipientBlock] = []
    for chunk in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        if not _TEXT_BLOCK.search(chunk):
            continue
        lines = [ln.strip() for ln in chunk.strip("\n").splitlines()]
        block = parser.parsestr(
            "\n".join(ln for ln in lines if re.match(r"^[\w-]+\s*:", ln)) + "\n"
        )
        parsed = block_from_fields(block)
        if parsed is not None and parsed.address:
            found.append(parsed)
    return found


def failure_class(block: RecipientBlock) -> str:
    """hard for a 5.x.x failure, soft for a 4.x.x one; the diagnostic's reply code
    when the status says neither; hard when nothing says (failed is final). A
    Status given that is no RFC 3463 code (``9.9.9``), with none in the diagnostic
    either, is soft: a report that cannot say what it means never suppresses an
    address."""
    for source in (block.status, block.diagnostic):
        if not source:
            continue
        status = find_status(source)
        if status and status[0] in "45":
            return "hard" if status[0] == "5" else "soft"
    if block.status_unreadable:
        return "soft"
    if block.diagnostic:
        first = reply_class(block.diagnostic)
        if first in ("4", "5"):
            return "hard" if first == "5" else "soft"
    return "hard"
