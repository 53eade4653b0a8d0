"""Building one recipient's message, fast, in the form the ``email`` package gives.

``build_message`` writes the bytes directly: header values on one line
(CR, LF and other breaks become spaces, so no data field can add a header),
RFC 2047 encoded words only where a header needs them, display names quoted
as RFC 5322 wants, 7-bit bodies when they are ASCII and quoted-printable
otherwise, and multipart/alternative when there is HTML. A test holds it to
what ``email.message.EmailMessage`` (SMTP policy) makes of the same input;
``reference_message`` is that reference.
"""

from __future__ import annotations

import re
import secrets
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


def one_line(text: str) -> str:
    """Header text on one line: CR, LF and other line breaks become spaces."""
    return " ".join(text.split())


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


def folded(name: str, value: str) -> str:
    """A header line folded and RFC 2047-encoded by the email package (without CRLF)."""
    line: str = SMTP.header_factory(name, value).fold(policy=SMTP)
    return line.rstrip(CRLF)


def unstructured(name: str, value: str, utf8: bool = False) -> str:
    """A whole unstructured header line (Subject), folded when long."""
    value = one_line(value)
    if value.isascii() or utf8:
        return f"{name}: {_fold(name, value)}"
    return folded(name, value)


def _fold(name: str, value: str) -> str:
    """Fold an ASCII value at spaces so that lines stay under 78 characters."""
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


def mailbox_header(header_name: str, name: str | None, address: str, utf8: bool = False) -> str:
    """``To: Display Name <addr@example.org>``, quoted or encoded as needed.

    With ``utf8`` (SMTPUTF8, RFC 6532) non-ASCII text is written as it is.
    """
    name = one_line(name or "")
    if not name:
        return f"{header_name}: {address}"
    if not name.isascii() and not utf8:
        return folded(header_name, str(Address(display_name=name, addr_spec=address)))
    if SPECIALS.search(name):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'{header_name}: "{escaped}" <{address}>'
    return f"{header_name}: {name} <{address}>"


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
) -> Envelope:
    """The message's bytes and its envelope: MAIL FROM is ``envelope_sender`` (a VERP
    address, say) when given, else ``from_address``; the From header is ``from_address``."""
    utf8 = needs_smtputf8(to_address) or needs_smtputf8(from_address)
    for address in (from_address, to_address):
        if any(c in address for c in "\r\n<>") or not address:
            raise ValueError(f"{address!r} cannot be used as an address in a header")
    head = (
        f"{mailbox_header('From', from_name, from_address, utf8)}{CRLF}"
        f"{mailbox_header('To', to_name, to_address, utf8)}{CRLF}"
        f"{unstructured('Subject', subject, utf8)}{CRLF}"
        f"Date: {format_datetime(date)}{CRLF}"
        f"Message-ID: {one_line(message_id)}{CRLF}"
    )
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
    message["From"] = Address(display_name=one_line(from_name or ""), addr_spec=from_address)
    message["To"] = Address(display_name=one_line(to_name or ""), addr_spec=to_address)
    message["Subject"] = one_line(subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = one_line(message_id)
    message.set_content(text, cte=None if text.isascii() else "quoted-printable")
    if html:
        message.add_alternative(
            html, subtype="html", cte=None if html.isascii() else "quoted-printable"
        )
    return message
