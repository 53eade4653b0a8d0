"""The fast message builder says what the email package says, for any input."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import default

from hypothesis import given, settings
from hypothesis import strategies as st

from core.messages.message import build_message, header_text, reference_message

DATE = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
text_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
names = st.one_of(st.none(), st.text(text_chars, max_size=60))
bodies = st.text(text_chars, max_size=400)


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def summary(message: EmailMessage) -> dict[str, object]:
    """What both builders must agree on: addresses, structure and bodies. The header
    text itself is held to independent decoders (tests/test_headers.py): the email
    package's own encoder loses spaces, so it is no reference for that."""
    parts = list(message.iter_parts()) if message.is_multipart() else [message]
    return {
        "from": [a.addr_spec for a in message["From"].addresses],
        "to": [a.addr_spec for a in message["To"].addresses],
        "date": str(message["Date"]),
        "message_id": str(message["Message-ID"]),
        "type": message.get_content_type(),
        "headers": sorted(k.lower() for k in message if k.lower() != "content-type"),
        "parts": [
            (p.get_content_type(), p.get_content().replace("\r\n", "\n").rstrip("\n"))
            for p in parts
        ],
    }


@settings(max_examples=300, deadline=None)
@given(
    from_name=names,
    to_name=names,
    subject=st.text(text_chars, max_size=200),
    text=bodies,
    html=st.one_of(st.none(), bodies.filter(bool)),
)
def test_the_fast_builder_matches_the_email_package(
    from_name: str | None, to_name: str | None, subject: str, text: str, html: str | None
) -> None:
    values = dict(
        from_address="billing@pools.example.com",
        from_name=from_name,
        to_address="ana.souza@example.org",
        to_name=to_name,
        subject=subject,
        text=text,
        html=html,
        message_id="<msgrun.1.2.abc@pools.example.com>",
        date=DATE,
    )
    fast = build_message(**values)  # type: ignore[arg-type]
    reference = reference_message(**values)  # type: ignore[arg-type]
    fast_message = parsed(fast.data)
    assert fast.data.isascii() and b"\r\n" in fast.data
    assert all(len(line) <= 998 for line in fast.data.split(b"\r\n"))
    assert summary(fast_message) == summary(parsed(reference.as_bytes()))
    assert str(fast_message["Subject"]) == header_text(subject)
    for name, header in ((from_name, "From"), (to_name, "To")):
        # The email package's address parser adds a space between two encoded words of
        # a display name (RFC 2047 6.2 drops it): a name too long for one word is held to
        # decode_header, as tests/test_headers.py holds every name to Perl's decoder too.
        raw = ("\r\n" + fast.data.decode("ascii")).split(f"\r\n{header}:", 1)[1].split("<")[0]
        if header_text(name or "") and raw.count("=?") > 1:
            decoded = str(make_header(decode_header(raw.replace("\r\n", "").strip())))
            assert decoded == header_text(name or "")
        else:
            assert fast_message[header].addresses[0].display_name == header_text(name or "")


def test_no_field_can_add_a_header() -> None:
    envelope = build_message(
        from_address="billing@pools.example.com",
        from_name="Pools\r\nBcc: a@evil.example",
        to_address="ana@example.org",
        to_name="Ana\nX-Injected: yes",
        subject="Invoice\r\nBcc: b@evil.example\r\n\r\nbody",
        text="t",
        html=None,
        message_id="<id@x>\r\nBcc: c@evil.example",
        date=DATE,
    )
    message = parsed(envelope.data)
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert set(k.lower() for k in message) == {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
    }
