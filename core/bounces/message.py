"""Parse helpers: headers decoded, text of the readable parts, the returned original."""

from __future__ import annotations

import email
import email.utils
import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser

# Parts that carry the original message (or its headers) inside a report.
RETURNED_TYPES = ("text/rfc822-headers", "message/rfc822", "message/rfc822-headers")
_MESSAGE_ID = re.compile(r"^[ \t]*Message-Id[ \t]*:[ \t]*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_TAGS = re.compile(r"<[^>]+>")
_ADDRESS = re.compile(r"[A-Za-z0-9._%+=/'!#$&*?^`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def parse(raw: bytes) -> Message:
    """The message, parsed leniently (broken reports are common)."""
    if raw.startswith(b"From ") and b"\n" in raw:
        # An mbox "From " line before the headers.
        raw = raw.split(b"\n", 1)[1]
    return email.message_from_bytes(raw)


def header(msg: Message, name: str) -> str:
    """A header's value, RFC 2047 words decoded, unfolded; "" when absent."""
    value = msg.get(name)
    if value is None:
        return ""
    return decode(value)


def headers(msg: Message, name: str) -> list[str]:
    return [decode(v) for v in (msg.get_all(name) or [])]


def decode(value: object) -> str:
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:
        text = str(value)
    return " ".join(text.split())


def payload_text(part: Message) -> str:
    """A leaf part's content as text, whatever its charset and transfer encoding."""
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return raw.decode(charset, errors="replace")
        except LookupError:
            return raw.decode("utf-8", errors="replace")
    payload = part.get_payload()
    return payload if isinstance(payload, str) else ""


def walk_leaves(msg: Message) -> Iterator[Message]:
    """Every part, not descending into a returned original message."""
    yield msg
    payload = msg.get_payload()
    if msg.get_content_type() in RETURNED_TYPES:
        return
    if isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                yield from walk_leaves(sub)


def readable_text(msg: Message, limit: int = 200_000) -> str:
    """The human-readable text of a report: its text/plain (or html) parts,
    not the returned original's body."""
    chunks: list[str] = []
    for part in walk_leaves(msg):
        ctype = part.get_content_type()
        if part.is_multipart() or ctype in RETURNED_TYPES:
            continue
        if ctype == "text/plain" or (ctype == "text/html" and not chunks):
            text = payload_text(part)
            if ctype == "text/html":
                text = html.unescape(_TAGS.sub(" ", text))
            chunks.append(text)
        elif part is msg and part.get_content_maintype() != "multipart":
            chunks.append(payload_text(part))
        if sum(len(c) for c in chunks) > limit:
            break
    return "\n".join(chunks)[:limit]


def returned_headers(msg: Message) -> Message | None:
    """The original message's headers returned inside the report, if any."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype not in RETURNED_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        text = payload_text(part)
        if text.strip():
            return HeaderParser().parsestr(text.lstrip())
    return None


def original_message_id(msg: Message, body: str | None = None) -> str | None:
    """The returned original's Message-ID: from its returned part, else quoted
    in the body (never the report's own Message-ID or In-Reply-To)."""
    original = returned_headers(msg)
    if original is not None:
        mid = header(original, "Message-ID")
        if mid:
            return normalise_message_id(mid)
    text = body if body is not None else readable_text(msg)
    m = _MESSAGE_ID.search(text)
    return m.group(1) if m else None


def normalise_message_id(value: str) -> str | None:
    value = value.strip()
    m = re.search(r"<[^>\s]+>", value)
    if m:
        return m.group(0)
    return f"<{value}>" if value and " " not in value else None


def addresses_in(text: str) -> list[str]:
    return [m.group(0).strip(".") for m in _ADDRESS.finditer(text)]


def address_of(value: str) -> str | None:
    """The address in `Name <a@b>`, `rfc822; a@b` or `a@b`."""
    if ";" in value:
        value = value.split(";", 1)[1]
    found = addresses_in(value)
    return found[0] if found else None


def delivered_to(msg: Message, envelope_to: str | None = None) -> tuple[str, ...]:
    """Where the report was delivered: Delivered-To, X-Original-To, To, envelope-to."""
    seen: list[str] = []
    values = headers(msg, "Delivered-To") + headers(msg, "X-Original-To")
    for _name, addr in email.utils.getaddresses(headers(msg, "To")):
        values.append(addr)
    if envelope_to:
        values.append(envelope_to)
    for value in values:
        found = address_of(value)
        if found and found not in seen:
            seen.append(found)
    return tuple(seen)


def report_date(msg: Message) -> datetime | None:
    value = header(msg, "Date")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def envelope_sender(msg: Message) -> str | None:
    """The envelope sender as the delivering MTA recorded it (Return-Path)."""
    values = headers(msg, "Return-Path")
    if not values:
        return None
    value = values[0].strip()
    if value in ("<>", ""):
        return ""
    return address_of(value) or value
