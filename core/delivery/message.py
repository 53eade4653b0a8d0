"""Building one recipient's message with the standard ``email`` package.

Headers come only from the profile and the rendered template, each reduced
to one line, and are set through the ``email`` API (which quotes display names
and encodes non-ASCII text as RFC 2047), so no data field can add a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime


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
) -> Envelope:
    utf8 = needs_smtputf8(to_address) or needs_smtputf8(from_address)
    message = EmailMessage(policy=SMTPUTF8 if utf8 else SMTP)
    message["From"] = Address(display_name=one_line(from_name or ""), addr_spec=from_address)
    message["To"] = Address(display_name=one_line(to_name or ""), addr_spec=to_address)
    message["Subject"] = one_line(subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    # Non-ASCII bodies as quoted-printable: no server needs 8BITMIME for them.
    message.set_content(text, cte=None if text.isascii() else "quoted-printable")
    if html:
        message.add_alternative(
            html, subtype="html", cte=None if html.isascii() else "quoted-printable"
        )
    return Envelope(from_address, to_address, message.as_bytes(), utf8)
