"""The fast message builder says what the email package says, for any input."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from hypothesis import given, settings
from hypothesis import strategies as st

from core.delivery.message import build_message, reference_message

DATE = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
text_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
names = st.one_of(st.none(), st.text(text_chars, max_size=60))
bodies = st.text(text_chars, max_size=400)


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def summary(message: EmailMessage) -> dict[str, object]:
    parts = list(message.iter_parts()) if message.is_multipart() else [message]
    return {
        "from": [(a.display_name, a.addr_spec) for a in message["From"].addresses],
        "to": [(a.display_name, a.addr_spec) for a in message["To"].addresses],
        "subject": str(message["Subject"]),
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
        "content-type",
        "content-transfer-encoding",
        "mime-version",
    }
