"""The message with attachments: multipart/mixed, base64 in lines of 76, file names
that every client reads back (RFC 2231, and RFC 2047 in name=)."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from core.attachments.mime import Attacher, encode, with_attachments
from core.attachments.reckon import encoded_size
from core.attachments.specs import FileSpec
from core.messages.message import build_message
from tests.attachment_support import pdf_bytes, sha256


def _message(html: str | None = None, subject: str = "Invoice 2026-0001") -> bytes:
    return build_message(
        from_address="billing@example.com",
        from_name="Blue Lagoon Pools",
        to_address="ana@example.org",
        to_name="Ana Souza",
        subject=subject,
        text="Please find the invoice attached.\nÄ line with ü.",
        html=html,
        message_id="<1.abc@example.com>",
        date=datetime(2026, 12, 5, 9, 0, tzinfo=UTC),
    ).data


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_message_with_a_pdf_is_multipart_mixed_with_the_body_first() -> None:
    pdf = pdf_bytes("2026-0001")
    data = with_attachments(_message(), [encode(FileSpec.of_path("2026/a.pdf"), pdf)])
    message = _parse(data)
    assert message.get_content_type() == "multipart/mixed"
    assert (
        message["Subject"] == "Invoice 2026-0001" and message["To"] == "Ana Souza <ana@example.org>"
    )
    body, attachment = message.iter_parts()
    assert body.get_content_type() == "text/plain"
    assert body.get_content() == _parse(_message()).get_content()  # the body as it was
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "a.pdf"
    assert attachment.get_payload(decode=True) == pdf
    assert not message.defects and not body.defects and not attachment.defects
    lines = data.split(b"\r\n")
    encoded_lines = [
        line
        for line in lines
        if line
        and set(line) <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    ]
    assert max(len(line) for line in encoded_lines) == 76
    assert all(b"\n" not in line for line in lines)  # CRLF line ends only


def test_html_stays_an_alternative_inside_the_mixed_message() -> None:
    data = with_attachments(
        _message(html="<p>Hi</p>"), [encode(FileSpec.of_path("a.pdf"), b"%PDF-1.4")]
    )
    alternative, attachment = _parse(data).iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert attachment.get_payload(decode=True) == b"%PDF-1.4"


def test_a_non_ascii_file_name_reads_back_exactly_in_both_forms() -> None:
    name = "Preisübersicht für Familie Müller – Rechnung 2026-0042 (Kopie).pdf"
    data = with_attachments(
        _message(), [encode(FileSpec("x.pdf", name, "application/pdf"), b"%PDF")]
    )
    _, attachment = _parse(data).iter_parts()
    assert attachment.get_filename() == name  # RFC 2231 filename*, continued
    assert b"filename*0*=utf-8''" in data
    content_type = attachment["Content-Type"]
    assert content_type.params["name"] == name  # RFC 2047 in name=, for older clients
    assert data.isascii()


def test_a_file_name_with_quotes_and_backslashes_is_quoted() -> None:
    name = 'Invoice "final" \\ copy.pdf'
    data = with_attachments(_message(), [encode(FileSpec("x.pdf", name, "application/pdf"), b"x")])
    _, attachment = _parse(data).iter_parts()
    assert attachment.get_filename() == name


def test_a_message_without_attachments_is_left_as_built() -> None:
    assert with_attachments(_message(), []) == _message()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_the_reckoned_base64_size_is_the_size_encoded(data: bytes) -> None:
    encoded = encode(FileSpec.of_path("a.bin"), data)
    header_end = encoded.part.index(b"\r\n\r\n") + 4
    body = encoded.part[header_end:]
    assert len(body) == encoded_size(len(data))
    assert base64.b64decode(body) == data
    assert encoded.evidence() == {"name": "a.bin", "bytes": len(data), "sha256": sha256(data)}


def test_the_definitions_file_is_read_once_until_it_changes(tmp_path: Path) -> None:
    (tmp_path / "terms.pdf").write_bytes(b"%PDF terms v1")
    attacher = Attacher(str(tmp_path), False, (FileSpec.of_path("terms.pdf"),))
    first = attacher.parts(())
    assert attacher.parts(())[0] is first[0]  # the same encoding, not read again
    (tmp_path / "terms.pdf").write_bytes(b"%PDF terms version 2")
    [changed] = attacher.parts(())
    assert changed.sha256 == sha256(b"%PDF terms version 2")
