"""Bounces in non-standard formats: `flufl.bounce`'s detectors, plus what msgrun
adds to them:
- the RFC 3463 status (or SMTP reply code) the human-readable text gives for each
  address, which also decides hard or soft;
- delivery-status fields written into the text instead of a delivery-status part;
- formats the library does not know: a message from a delivery system (or with a
  bounce's subject) whose text names the failed addresses next to the failure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

from core.bounces import autoreply, dsn
from core.bounces.message import (
    address_of,
    addresses_in,
    delivered_to,
    envelope_sender,
    header,
    headers,
    returned_headers,
)

log = logging.getLogger(__name__)

_STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# An SMTP reply code: 4xx or 5xx standing alone (an IPv4 octet is never above 255).
_REPLY = re.compile(r"(?<![\w.:/#=+-])([45][0-5]\d)(?=[\s\-:;,)\]]|$)")
_FAILURE_WORDS = re.compile(
    r"unknown|not exist|no such|does not|doesn't|invalid|rejected|refused|denied|"
    r"failed|failure|unable|could not|couldn't|cannot|can't|unavailable|undeliver|"
    r"not found|disabled|suspended|inactive|over ?quota|quota|mailbox (?:is )?full|"
    r"full|blocked|blacklist|spam|timed? ?out|expired|too many|not allowed|"
    r"unroutable|unrouteable|relay|permanent|error|bad|not a member|deferred|"
    r"retry|host|said|mailbox|user|malformed|incorrect|syntax",
    re.IGNORECASE,
)
_TEMPORARY = re.compile(
    r"deferred|will (?:be )?retr|retrying|try again later|temporar|delayed|"
    r"not yet been delivered|could not be delivered for \d|for \d+ (?:days|hours)|"
    r"cannot send message for|timed? ?out|warning:",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status notification|failure|failed|notification|"
    r"report|problem)|returned mail|returned to sender|failure notice|mail delivery|"
    r"non[- ]?delivery|nondeliverable|not delivered|could not be delivered|delivery error|"
    r"mail system error|mail failure|error sending|returned message|bounce|rejected|"
    r"delivery has failed|message not delivered|permanent error|warning: could not|"
    r"不達|配信|エラー|送信できません|送達|未送达|退信",
    re.IGNORECASE,
)
# A person answering or forwarding ("Re: Delivery failure?") is no delivery system.
_REPLY_SUBJECT = re.compile(r"^\s*(?:re|fw|fwd|aw|wg|sv|vs|tr|rv|antw|odp)\s*:", re.I)
# Where the returned original begins in a bounce's text.
_ORIGINAL_MARK = re.compile(
    r"^[ \t>|-]*(?:"
    r"[-=_* ]*(?:the )?(?:original|returned|unsent|undelivered|included|attached)"
    r"(?: message| mail)?(?: headers?)?(?: follows?| is attached| below)?\s*[-=_* :]*$|"
    r".*(?:below (?:this line )?is a copy|copy of the (?:original )?message|"
    r"original message (?:follows|headers|was)|unsent message follows|message follows|"
    r"returned message|this is a copy of)|"
    r"(?:Received|Return-Path|DKIM-Signature|Message-I[Dd]|X-[A-Za-z-]+)\s*:\s)",
    re.IGNORECASE | re.MULTILINE,
)


_SENDER_BEFORE = re.compile(r"\b(?:from|sender|sent by)\s*:?\s*<?$", re.I)
_ID_LINE = re.compile(r"^\s*(?:message-?id|in-reply-to|references|content-id)\s*:", re.I)


@dataclass(frozen=True)
class Failure:
    address: str
    permanent: bool
    status: str | None
    diagnostic: str | None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def library_failures(msg: Message) -> tuple[set[str], set[str]]:
    """flufl.bounce's (temporary, permanent) addresses; nothing when a detector breaks."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping over a malformed message
        log.debug("flufl.bounce failed on a message", exc_info=True)
        return set(), set()
    return {_text(a) for a in temporary if a}, {_text(a) for a in permanent if a}


def detect_library_only(msg: Message, body: str) -> list[Failure]:
    """What flufl.bounce alone finds (no status, hard/soft as it says)."""
    temporary, permanent = library_failures(msg)
    return [Failure(a, True, None, None) for a in sorted(permanent)] + [
        Failure(a, False, None, None) for a in sorted(temporary - permanent)
    ]


def report_part(body: str) -> str:
    """The bounce's own words: its text up to where the returned original begins."""
    m = _ORIGINAL_MARK.search(body, 1)
    while m is not None and not body[: m.start()].strip():
        m = _ORIGINAL_MARK.search(body, m.end())
    return body[: m.start()] if m else body


def _line_at(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, len(text) if end < 0 else end


def evidence(text: str, address: str) -> tuple[str | None, str | None, str | None]:
    """(status, reply class, the server's words) the text gives near the address."""
    lowered = text.lower()
    pos = lowered.find(address.lower())
    windows: list[str] = []
    if pos >= 0:
        start, end = _line_at(text, pos)
        # The address's line and the few after it (the reply often follows).
        tail_end = end
        for _ in range(4):
            nxt = text.find("\n", tail_end + 1)
            tail_end = len(text) if nxt < 0 else nxt
        windows.append(text[start:tail_end])
    windows.append(text)
    for window in windows:
        m = _STATUS.search(window)
        if m is None and window is text and pos >= 0:
            return None, None, _failure_line(windows[0], address)
        if m:
            return ".".join(m.groups()), m.group(1), _words(window, m.start())
        r = _REPLY.search(window)
        if r:
            return None, r.group(1)[0], _words(window, r.start())
    return None, None, None


def _failure_line(window: str, address: str) -> str:
    """The first line near the address that says what failed, else the address's line."""
    lines = [ln.strip() for ln in window.splitlines() if ln.strip()]
    for line in lines:
        rest = line.replace(address, "")
        if _FAILURE_WORDS.search(rest):
            return " ".join(line.split())[:500]
    return lines[0][:500] if lines else address


def _words(text: str, pos: int) -> str:
    start, end = _line_at(text, pos)
    line = " ".join(text[start:end].split())
    return line[:500]


def _exclusions(msg: Message) -> set[str]:
    """Addresses in a bounce that are not the failed recipients."""
    out: set[str] = set()
    for name in ("From", "Sender", "Reply-To", "Return-Path", "Errors-To"):
        for value in headers(msg, name):
            addr = address_of(value)
            if addr:
                out.add(addr.lower())
    out.update(a.lower() for a in delivered_to(msg))
    original = returned_headers(msg)
    if original is not None:
        for name in ("From", "Sender", "Reply-To", "Return-Path"):
            addr = address_of(header(original, name))
            if addr:
                out.add(addr.lower())
    sender = envelope_sender(msg)
    if sender:
        out.add(sender.lower())
    return out


def _original_recipients(msg: Message, body: str) -> list[str]:
    original = returned_headers(msg)
    if original is not None:
        found = addresses_in(header(original, "To"))
        if found:
            return found
    rest = body[len(report_part(body)) :]
    m = re.search(r"^To:\s*(.+)$", rest, re.IGNORECASE | re.MULTILINE)
    return addresses_in(m.group(1)) if m else []


def looks_like_bounce(msg: Message) -> bool:
    """From a delivery system (not merely an auto-responder with a null sender),
    or with a bounce's subject."""
    subject = header(msg, "Subject")
    if _BOUNCE_SUBJECT.search(subject) and not _REPLY_SUBJECT.match(subject):
        return True
    if autoreply.auto_reply_marker(msg) and not autoreply.from_daemon_address(msg):
        return False
    return autoreply.from_delivery_system(msg)


def unknown_format(msg: Message, body: str) -> list[Failure]:
    """The failed addresses of a bounce in a format the library does not know."""
    text = report_part(body)
    if not (_STATUS.search(text) or _REPLY.search(text) or _FAILURE_WORDS.search(text)):
        return []
    excluded = _exclusions(msg)
    candidates: list[str] = []
    for addr in addresses_in(text):
        local = addr.split("@", 1)[0]
        if addr.lower() in excluded or autoreply.is_daemon_local(local):
            continue
        pos = text.find(addr)
        start, end = _line_at(text, pos)
        if _ID_LINE.match(text[start:end]):
            continue  # a Message-ID, not an address
        if _SENDER_BEFORE.search(text[start:pos]):
            continue  # "received ... from billing@…": the sender
        if addr.lower() not in (c.lower() for c in candidates):
            candidates.append(addr)
    strong = [a for a in candidates if _near_failure(text, a)]
    chosen = strong or candidates[:3] or _original_recipients(msg, body)[:3]
    return [_failure(text, addr, None) for addr in chosen]


def _near_failure(text: str, address: str) -> bool:
    pos = text.lower().find(address.lower())
    start, end = _line_at(text, pos)
    nxt = text.find("\n", end + 1)
    window = text[start : len(text) if nxt < 0 else nxt]
    return bool(
        _STATUS.search(window)
        or _REPLY.search(window)
        or _FAILURE_WORDS.search(window.replace(address, ""))
    )


def _failure(text: str, address: str, permanent: bool | None) -> Failure:
    status, reply, words = evidence(text, address)
    if reply in ("4", "5"):
        is_permanent = reply == "5"
    elif permanent is not None:
        is_permanent = permanent
    else:
        is_permanent = not _TEMPORARY.search(text)
    return Failure(address, is_permanent, status, words)


def detect(msg: Message, body: str) -> list[Failure]:
    """Every failed address the library or msgrun's additions find."""
    bounce_like = looks_like_bounce(msg)
    text = report_part(body)
    if bounce_like:
        blocks = [b for b in dsn.text_blocks(body) if b.action in ("failed", "delayed")]
        if blocks:
            return [
                Failure(b.address or "", dsn.failure_class(b) == "hard", b.status, b.diagnostic)
                for b in blocks
                if b.address
            ]
    temporary, permanent = library_failures(msg)
    if temporary or permanent:
        return [
            _failure(
                text if address.lower() in text.lower() else body, address, address in permanent
            )
            for address in sorted(permanent | temporary)
        ]
    if bounce_like:
        return unknown_format(msg, body)
    return []
