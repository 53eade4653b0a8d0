"""Building one recipient's message, fast, in the form the ``email`` package gives.

``build_message`` writes the bytes directly: header text as ``header_text``
makes it (runs of spaces, tabs, CR and LF one space, so no data field can add a
header), RFC 2047 encoded words of our own where a header needs them (whole
values, spaces inside the words, never two words without whitespace between
them, none over 75 characters: decoding gives the text back exactly, whatever
the decoder or Python version — the email package's own encoder lost spaces
and ran words together), display names quoted as RFC 5322 wants, 7-bit bodies
when they are ASCII and quoted-printable otherwise, and multipart/alternative
when there is HTML. Tests hold the headers to independent decoders, and the
bodies to what ``email.message.EmailMessage`` (SMTP policy) makes of the same
input; ``reference_message`` is that reference.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import charset as email_charset
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

CRLF = "\r\n"
# Characters that oblige a display name to be quoted (RFC 5322 "specials").
SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
UTF8 = email_charset.Charset("utf-8")
UTF8.body_encoding = email_charset.QP
MAX_LINE = 998
# Line ends in a body: only CR, LF and CRLF (str.splitlines also splits at
# \x1c-\x1e, \x85, U+2028 and U+2029, which are text in an email).
LINE_END = re.compile(r"\r\n|\r|\n")
# What header text collapses to one space (inbox.md): spaces, tabs, CR and LF only.
HEADER_SPACE = re.compile(r"[ \t\r\n]+")
# An encoded word's longest (RFC 2047 2), and the bytes Q writes as they are: those RFC
# 2047 5(3) allows in a phrase, so one encoder serves Subject and display names alike.
MAX_WORD = 75
Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def one_line(text: str) -> str:
    """Header text on one line: CR, LF and other line breaks become spaces."""
    return " ".join(text.split())


def header_text(text: str) -> str:
    """Rendered text as a header carries it (``inbox.md``): each run of spaces, tabs,
    CR and LF one space, the ends trimmed, nothing else changed (a non-breaking or an
    ideographic space is text, and stays)."""
    return HEADER_SPACE.sub(" ", text).strip(" ")


def needs_smtputf8(address: str) -> bool:
    return not address.isascii()


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipient: str
    data: bytes
    smtputf8: bool
    # What the message carries ({"name", "bytes", "sha256"} each; attachments.md).
    attachments: tuple[dict[str, Any], ...] = ()


def _needs_encoding(value: str, utf8: bool) -> bool:
    """Whether header text must go as RFC 2047 encoded words: text outside ASCII (unless
    the message is SMTPUTF8), a control character, text a decoder would take for an
    encoded word (``=?``), or a word too long for a line."""
    if not utf8 and not value.isascii():
        return True
    if "=?" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return True
    return any(len(word.encode("utf-8")) > MAX_LINE - 80 for word in value.split(" "))


def _q_length(data: bytes | bytearray) -> int:
    return sum(1 if b in Q_SAFE or b == 0x20 else 3 for b in data)


def _q_text(data: bytes) -> str:
    return "".join(chr(b) if b in Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in data)


def _b_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def encoded_words(value: str, first_room: int) -> list[str]:
    """``value`` as RFC 2047 encoded words of UTF-8, each at most 75 characters, the
    first at most ``first_room``: the text is cut between characters (never inside
    one), and spaces go inside the words, so that the whitespace a decoder drops
    between adjacent encoded words (RFC 2047 6.2) is only the folding between them.

    Q encoding when it is no longer than B for the whole value, else B; Q writes only
    the characters RFC 2047 5(3) allows in a phrase, so the words serve a display name
    as well as a Subject.
    """
    data = value.encode("utf-8")
    use_q = _q_length(data) <= _b_length(len(data))
    prefix, suffix = ("=?utf-8?q?", "?=") if use_q else ("=?utf-8?b?", "?=")
    words: list[str] = []
    room = min(first_room, MAX_WORD) - len(prefix) - len(suffix)
    chunk = bytearray()
    for char in value:
        piece = char.encode("utf-8")
        candidate = chunk + piece
        size = _q_length(candidate) if use_q else _b_length(len(candidate))
        if size > room and chunk:
            words.append(_word(bytes(chunk), use_q, prefix, suffix))
            chunk = bytearray(piece)
            room = MAX_WORD - len(prefix) - len(suffix)
        else:
            chunk = candidate
    words.append(_word(bytes(chunk), use_q, prefix, suffix))
    return words


def _word(data: bytes, use_q: bool, prefix: str, suffix: str) -> str:
    payload = _q_text(data) if use_q else base64.b64encode(data).decode("ascii")
    return f"{prefix}{payload}{suffix}"


def _fold(name: str, value: str) -> str:
    """Fold a value at spaces so that lines stay under 78 characters where a space
    allows it (unfolding gives the value back: the space stays after the CRLF)."""
    if len(name) + 2 + len(value) <= 78:
        return value
    lines: list[str] = []
    line = ""
    width = 78 - len(name) - 2
    for word in value.split(" "):
        candidate = f"{line} {word}" if line else word
        if len(candidate) > width and line:
            lines.append(line)
            line = word
            width = 77
        else:
            line = candidate
    lines.append(line)
    return (CRLF + " ").join(lines)


def unstructured(name: str, value: str, utf8: bool = False) -> str:
    """A whole unstructured header line (Subject): the text as ``header_text`` makes
    it, as it is when it can be, else as encoded words; folded when long."""
    value = header_text(value)
    if not _needs_encoding(value, utf8):
        return f"{name}: {_fold(name, value)}"
    words = encoded_words(value, 78 - len(name) - 2)
    return f"{name}: " + (CRLF + " ").join(words)


def mailbox_header(header_name: str, name: str | None, address: str, utf8: bool = False) -> str:
    """``To: Display Name <addr@example.org>``, quoted or encoded as needed.

    With ``utf8`` (SMTPUTF8, RFC 6532) non-ASCII text is written as it is.
    """
    name = header_text(name or "")
    if not name:
        return f"{header_name}: {address}"
    if _needs_encoding(name, utf8):
        # One encoded word whenever the name fits one, on a line of its own if need be:
        # the email package's address parser (3.11 to 3.13) adds a space between two
        # encoded words of a display name, where RFC 2047 6.2 and other decoders drop it.
        lead = f"{header_name}: "
        words = encoded_words(name, 78 - len(lead))
        if len(words) > 1 and len(single := encoded_words(name, MAX_WORD)) == 1:
            lead, words = f"{header_name}:{CRLF} ", single
        line = lead + (CRLF + " ").join(words)
        gap = CRLF + " " if len(line.rsplit(CRLF, 1)[-1]) + 3 + len(address) > 78 else " "
        return f"{line}{gap}<{address}>"
    if SPECIALS.search(name):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f"{header_name}: " + _fold(header_name, f'"{escaped}" <{address}>')
    return f"{header_name}: " + _fold(header_name, f"{name} <{address}>")


def address_header(header_name: str, address: str) -> str:
    """A header naming one address (Reply-To), refused when it could break the header."""
    _check_address(address)
    return f"{header_name}: {address}"


def _check_address(address: str) -> None:
    if any(c in address for c in "\r\n<>") or not address:
        raise ValueError(f"{address!r} cannot be used as an address in a header")


def _body(text: str, subtype: str) -> tuple[str, str]:
    """Headers and encoded body of one text part."""
    if text.isascii() and all(len(line) <= MAX_LINE for line in LINE_END.split(text)):
        encoding, body = "7bit", text
    else:
        encoding, body = "quoted-printable", UTF8.body_encode(text)
    body = CRLF.join(LINE_END.split(body))
    if not body.endswith(CRLF):
        body += CRLF
    headers = (
        f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}'
        f"Content-Transfer-Encoding: {encoding}{CRLF}"
    )
    return headers, body


def build_message(
    *,
    from_address: str,
    from_name: str | None,
    to_address: str,
    to_name: str | None,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    date: datetime,
    envelope_sender: str | None = None,
    reply_to: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> Envelope:
    """The message's bytes and its envelope: MAIL FROM is ``envelope_sender`` (a VERP
    address, say) when given, else ``from_address``; the From header is ``from_address``.

    Every message says ``Auto-Submitted: auto-generated`` (RFC 3834: responders stay
    quiet); ``reply_to`` adds a Reply-To; ``extra_headers`` are ASCII header lines of
    the message's kind (``List-Unsubscribe``, ``Precedence``), written as given.
    """
    utf8 = (
        needs_smtputf8(to_address)
        or needs_smtputf8(from_address)
        or (reply_to is not None and needs_smtputf8(reply_to))
    )
    for address in (from_address, to_address):
        _check_address(address)
    head = (
        f"{mailbox_header('From', from_name, from_address, utf8)}{CRLF}"
        f"{mailbox_header('To', to_name, to_address, utf8)}{CRLF}"
        f"{unstructured('Subject', subject, utf8)}{CRLF}"
        f"Date: {format_datetime(date)}{CRLF}"
        f"Message-ID: {one_line(message_id)}{CRLF}"
    )
    if reply_to:
        head += f"{address_header('Reply-To', reply_to)}{CRLF}"
    head += f"Auto-Submitted: auto-generated{CRLF}"
    for name, value in extra_headers:
        if not value.isascii() or any(c in value for c in "\r\n"):
            raise ValueError(f"{name}: {value!r} cannot be written as a header")
        head += f"{name}: {value}{CRLF}"
    if html is None:
        part_headers, body = _body(text, "plain")
        message = f"{head}{part_headers}MIME-Version: 1.0{CRLF}{CRLF}{body}"
    else:
        boundary = "===============" + secrets.token_hex(10) + "=="
        text_headers, text_body = _body(text, "plain")
        html_headers, html_body = _body(html, "html")
        message = (
            f"{head}MIME-Version: 1.0{CRLF}"
            f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{CRLF}'
            f"--{boundary}{CRLF}{text_headers}{CRLF}{text_body}"
            f"--{boundary}{CRLF}{html_headers}{CRLF}{html_body}"
            f"--{boundary}--{CRLF}"
        )
    return Envelope(
        envelope_sender or from_address,
        to_address,
        message.encode("utf-8" if utf8 else "ascii"),
        utf8,
    )


def reference_message(
    *,
    from_address: str,
    from_name: str | None,
    to_address: str,
    to_name: str | None,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    date: datetime,
) -> EmailMessage:
    """The same message built with the ``email`` package (SMTP policy; ASCII addresses)."""
    message = EmailMessage(policy=SMTP)
    # The email package refuses the breaks header_text keeps (\x0b, U+2028 …), and its
    # encoder is no reference for header text (tests/test_headers.py is): one_line here.
    message["From"] = Address(display_name=one_line(from_name or ""), addr_spec=from_address)
    message["To"] = Address(display_name=one_line(to_name or ""), addr_spec=to_address)
    message["Subject"] = one_line(subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = one_line(message_id)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, cte=None if text.isascii() else "quoted-printable")
    if html:
        message.add_alternative(
            html, subtype="html", cte=None if html.isascii() else "quoted-printable"
        )
    return message
