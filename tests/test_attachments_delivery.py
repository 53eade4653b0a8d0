"""Sending with attachments: each customer's own file, never a message without it,
the evidence of what each message carried, and a follow-up once the file is back."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from core.clock import SystemClock, parse_instant
from core.follow_up import start_follow_up
from core.run_info import get_run
from core.storage import Database
from core.storage.models import Definition, table_of
from core.views import export_rows
from core.views.export_rows import Selection
from core.views.run_json import recipient_rows
from core.views.runs import recipient_detail
from fixtures.smtp_servers import Faults, SmtpServer
from tests.attachment_support import pdf_bytes, sha256
from tests.delivery_support import AT, assert_counts_match_rows, deliver_now, document, new_run
from tests.test_delivery import _deliver_in_thread

pytestmark = pytest.mark.usefixtures("sending_ways")


def invoices(folder: Path, count: int, port: int, **profile: Any) -> dict[str, Any]:
    """``count`` customers, each with their own invoice PDF in ``folder``."""
    doc = document(count, port, **profile)
    doc["organisation"]["documents_folder"] = str(folder)
    (folder / "2026").mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(doc["documents"]):
        (folder / "2026" / f"{item['number']}.pdf").write_bytes(pdf_bytes(f"invoice {i}", i))
        item["files"] = [{"path": f"2026/{item['number']}.pdf"}]
    return doc


def attachments_of(message: EmailMessage) -> list[tuple[str | None, bytes]]:
    return [
        (part.get_filename(), part.get_payload(decode=True))  # type: ignore[misc]
        for part in message.iter_attachments()
    ]


def test_each_customer_gets_their_own_invoice_and_the_evidence_says_which(
    db: Database, tmp_path: Path
) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, invoices(tmp_path, 5, server.port))
        assert deliver_now(db, run_id).state == "completed"
        received = {m.recipient: m.message for m in server.messages()}
    rows = recipient_rows(db, run_id)
    assert len(received) == 5
    for i, row in enumerate(rows):
        own = (tmp_path / "2026" / f"2026-{i:05d}.pdf").read_bytes()
        message = received[f"p{i}@example.org"]
        assert isinstance(message, EmailMessage)
        assert message.get_content_type() == "multipart/mixed"
        assert attachments_of(message) == [(f"2026-{i:05d}.pdf", own)]  # theirs, nobody else's
        assert row["attachments"] == [
            {"name": f"2026-{i:05d}.pdf", "bytes": len(own), "sha256": sha256(own)}
        ]
    assert assert_counts_match_rows(db, run_id)["sent"] == 5


def test_the_definitions_own_file_goes_with_every_message_after_the_documents(
    db: Database, tmp_path: Path
) -> None:
    terms = pdf_bytes("Terms and conditions")
    with SmtpServer() as server:
        doc = invoices(tmp_path, 3, server.port)
        (tmp_path / "terms").mkdir()
        (tmp_path / "terms" / "Allgemeine Geschäftsbedingungen.pdf").write_bytes(terms)
        doc["definitions"][0]["template"]["attachments"] = {
            "files": ["terms/Allgemeine Geschäftsbedingungen.pdf"]
        }
        run_id = new_run(db, doc)
        assert deliver_now(db, run_id).state == "completed"
        messages = [m.message for m in server.messages()]
    for message in messages:
        assert isinstance(message, EmailMessage)
        names = [name for name, _ in attachments_of(message)]
        assert names[1] == "Allgemeine Geschäftsbedingungen.pdf"
        assert attachments_of(message)[1][1] == terms


def test_a_file_gone_at_sending_fails_that_recipient_and_a_follow_up_sends_it_once_back(
    db: Database, tmp_path: Path
) -> None:
    # One connection: the second message is built only once the first is answered.
    gate, held = threading.Event(), threading.Event()
    with SmtpServer(faults=Faults(data_gate=gate, data_held=held)) as server:
        run_id = new_run(db, invoices(tmp_path, 3, server.port, max_connections=1))
        second = tmp_path / "2026" / "2026-00001.pdf"
        kept = second.read_bytes()
        thread, outcome = _deliver_in_thread(db, run_id)
        assert held.wait(30), "the first message never reached DATA"
        second.unlink()  # deleted while the first message is at the server
        gate.set()
        thread.join(60)
        assert outcome[0].state == "completed_with_failures"  # type: ignore[attr-defined]
        assert server.recipients() == {"p0@example.org": 1, "p2@example.org": 1}
        failed = recipient_rows(db, run_id)[1]
        assert failed["state"] == "failed"
        assert failed["reasons"] == [
            {
                "code": "document_file_missing",
                "detail": "2026/2026-00001.pdf: no such file",
            }
        ]
        assert failed["attachments"] == []
        rows = {row["address"]: row for row in export_rows.rows(db, run_id, Selection())}
        assert rows["p1@example.org"]["reasons"] == "document_file_missing"
        assert rows["p1@example.org"]["attachments"] is None
        assert (
            rows["p0@example.org"]["attachments"]
            == "2026-00000.pdf ("
            + str((tmp_path / "2026" / "2026-00000.pdf").stat().st_size)
            + " bytes)"
        )

        second.write_bytes(kept)  # the billing system made it again
        follow_up = start_follow_up(
            db, run_id, Selection(), parse_instant(AT), SystemClock(), started_by="test"
        )
        assert deliver_now(db, follow_up).state == "completed"
        again = [m for m in server.messages() if m.recipient == "p1@example.org"]
    [message] = [m.message for m in again]
    assert isinstance(message, EmailMessage)
    assert attachments_of(message) == [("2026-00001.pdf", kept)]
    [row] = recipient_rows(db, follow_up)
    assert row["attachments"][0]["sha256"] == sha256(kept)


def test_a_link_swapped_in_after_planning_is_never_read(db: Database, tmp_path: Path) -> None:
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(b"%PDF someone else's")
    folder = tmp_path / "docs"
    with SmtpServer() as server:
        run_id = new_run(db, invoices(folder, 2, server.port))
        first = folder / "2026" / "2026-00000.pdf"
        first.unlink()
        os.symlink(secret, first)
        deliver_now(db, run_id)
        assert server.recipients() == {"p1@example.org": 1}
        assert all(b"someone else" not in m.data for m in server.messages())
    [failed, _] = recipient_rows(db, run_id)
    assert failed["state"] == "failed"
    assert failed["reasons"][0]["code"] == "document_file_missing"
    assert "leads outside the documents folder" in failed["reasons"][0]["detail"]


def test_twenty_files_missing_in_a_row_end_the_run_with_the_rest_pending(
    db: Database, tmp_path: Path
) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, invoices(tmp_path, 30, server.port, max_connections=1))
        for pdf in (tmp_path / "2026").iterdir():
            pdf.unlink()
        delivery = deliver_now(db, run_id)
        assert server.messages() == []
    assert delivery.state == "failed"
    error = delivery.error or ""
    assert error.startswith(
        "files to attach were missing or unreadable for 20 recipients in a row: "
        "2026/2026-00000.pdf: no such file; 2026/2026-00001.pdf: no such file; "
        "2026/2026-00002.pdf: no such file; and others "
        f"(in the documents folder {tmp_path}; a fault of the definition"
    )
    assert "template" not in error
    counts = assert_counts_match_rows(db, run_id)
    assert (counts["sent"], counts["failed"], counts["pending"]) == (0, 20, 10)


def terms_for_everyone(folder: Path, count: int, port: int, **profile: Any) -> dict[str, Any]:
    """``count`` customers and a definition attaching its own terms.pdf to every message
    (the documents list no files of their own)."""
    doc = document(count, port, **profile)
    doc["organisation"]["documents_folder"] = str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "terms.pdf").write_bytes(pdf_bytes("Terms and conditions"))
    doc["definitions"][0]["template"]["attachments"] = {"files": ["terms.pdf"]}
    return doc


def test_the_definitions_file_gone_ends_the_run_as_files_missing_not_as_the_template(
    db: Database, tmp_path: Path
) -> None:
    """Every message attaches terms.pdf, deleted after the run was made: the same error
    for everyone, which is not a template that fails. The run ends at the twentieth,
    saying the files are missing and what to do; exactly the 20 are failed, on several
    connections too (a message built after the run's fault is left pending)."""
    total = 60
    with SmtpServer() as server:
        run_id = new_run(db, terms_for_everyone(tmp_path, total, server.port, max_connections=3))
        terms = tmp_path / "terms.pdf"
        kept = terms.read_bytes()
        terms.unlink()
        delivery = deliver_now(db, run_id)
        assert server.messages() == []
        run = get_run(db, run_id)
        assert delivery.state == run.state == "failed"
        assert run.error == (
            "files to attach were missing or unreadable for 20 recipients in a row: "
            f"terms.pdf: no such file (in the documents folder {tmp_path}; a fault of the "
            "definition, not of the recipients: once the files are back, run restart sends "
            "those not tried and run follow-up the failed)"
        )
        counts = assert_counts_match_rows(db, run_id)
        assert (counts["sent"], counts["failed"], counts["pending"]) == (0, 20, total - 20)
        rows = recipient_rows(db, run_id)
        failed = [row for row in rows if row["state"] == "failed"]
        assert len(failed) == 20
        for row in failed:
            assert row["reasons"] == [
                {"code": "document_file_missing", "detail": "terms.pdf: no such file"}
            ]
            assert row["attachments"] == []
        exported = [r for r in export_rows.rows(db, run_id, Selection()) if r["state"] == "failed"]
        assert {r["reasons"] for r in exported} == {"document_file_missing"}
        assert all(row["attempts"] == 0 for row in rows if row["state"] == "pending")

        # As the reason says: the file back, a restart sends those not tried ...
        terms.write_bytes(kept)
        assert deliver_now(db, run_id).state == "completed_with_failures"
        assert len(server.messages()) == total - 20
        # ... and a follow-up the failed.
        follow_up = start_follow_up(
            db, run_id, Selection(), parse_instant(AT), SystemClock(), started_by="test"
        )
        assert deliver_now(db, follow_up).state == "completed"
        assert server.recipients() == {f"p{i}@example.org": 1 for i in range(total)}
        assert all(
            attachments_of(m.message) == [("terms.pdf", kept)]  # type: ignore[arg-type]
            for m in server.messages()
        )


def test_a_template_failure_between_missing_files_neither_counts_nor_starts_again(
    db: Database, tmp_path: Path
) -> None:
    """A message whose template fails never gets as far as its files: it says nothing
    about them, so the missing files' count goes on past it (and the template's own count,
    started again by each missing file, never reaches twenty)."""
    with SmtpServer() as server:
        run_id = new_run(db, invoices(tmp_path, 40, server.port, max_connections=1))
        with db.connect() as connection:  # every third recipient's template fails
            connection.execute(
                update(table_of(Definition)).values(
                    template_text=(
                        "{% if customer.id[1:] | int % 3 == 0 %}{{ document.no_such.x }}"
                        "{% endif %}Hello"
                    )
                )
            )
        for pdf in (tmp_path / "2026").iterdir():
            pdf.unlink()
        delivery = deliver_now(db, run_id)
        assert server.messages() == []
    assert delivery.state == "failed"
    assert (delivery.error or "").startswith(
        "files to attach were missing or unreadable for 20 recipients in a row"
    )
    # 0…29: ten template failures (0, 3, …, 27) and twenty missing files; 30…39 pending.
    by_address = {row["address"]: row for row in recipient_rows(db, run_id)}
    for i in range(40):
        row = by_address[f"p{i}@example.org"]
        if i >= 30:
            assert row["state"] == "pending", i
        elif i % 3 == 0:
            assert row["state"] == "failed" and not row["reasons"], i
            assert "no_such" in row["error"], i
        else:
            assert row["state"] == "failed", i
            assert row["reasons"][0]["code"] == "document_file_missing", i
    assert assert_counts_match_rows(db, run_id)["failed"] == 30


def test_a_documents_folder_gone_ends_the_run_with_everything_pending(
    db: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    with SmtpServer() as server:
        run_id = new_run(db, invoices(folder, 30, server.port, max_connections=3))
        folder.rename(tmp_path / "moved")
        delivery = deliver_now(db, run_id)
        assert server.messages() == []
        run = get_run(db, run_id)
        assert delivery.state == run.state == "failed"
        assert run.error == (
            f"the documents folder {folder} does not exist or is not a folder (a fault of "
            "the definition: nothing can be attached; once the folder is back, or the "
            "organisation's documents_folder corrected by an import, run restart sends "
            "those not tried)"
        )
        assert assert_counts_match_rows(db, run_id)["pending"] == 30
        assert all(row["reasons"] in (None, []) for row in recipient_rows(db, run_id))

        (tmp_path / "moved").rename(folder)  # as the reason says: back, then a restart
        assert deliver_now(db, run_id).state == "completed"
        assert len(server.messages()) == 30


def test_a_message_over_the_servers_size_is_never_sent(db: Database, tmp_path: Path) -> None:
    with SmtpServer() as server:
        doc = invoices(tmp_path, 1, server.port, max_message_bytes=12_000)
        run_id = new_run(db, doc)  # planned while it was small enough: a bigger file now
        (tmp_path / "2026" / "2026-00000.pdf").write_bytes(pdf_bytes("big", 20_000))
        deliver_now(db, run_id)
        assert server.messages() == []
    [row] = recipient_rows(db, run_id)
    assert row["state"] == "failed"
    assert row["reasons"][0]["code"] == "message_too_large"
    assert (
        "over the limit of 12,000 bytes (the profile's max_message_bytes)"
        in (row["reasons"][0]["detail"])
    )


def test_messages_too_large_in_a_row_fail_one_by_one_not_the_run(
    db: Database, tmp_path: Path
) -> None:
    """Messages over the size, each its own verdict (rule 20 at sending): the template
    rendered and the files were there, so twenty alike in a row do not end the run as a
    template that fails (those of positions 10-40 are of one size: the same words)."""
    with SmtpServer() as server:
        doc = invoices(tmp_path, 41, server.port, max_message_bytes=12_000)
        for i, customer in enumerate(doc["customers"]):
            (contact,) = customer["contacts"]
            contact["addresses"][0]["address"] = f"p{i:02d}@example.org"
            contact["name"], customer["name"] = f"Person {i:02d}", f"Customer {i:02d}"
        run_id = new_run(db, doc)
        for i in range(41):
            (tmp_path / "2026" / f"2026-{i:05d}.pdf").write_bytes(pdf_bytes("big", 20_000))
        assert deliver_now(db, run_id).state == "completed_with_failures"
        assert server.messages() == []
    rows = recipient_rows(db, run_id)
    assert {(r["state"], r["reasons"][0]["code"]) for r in rows} == {
        ("failed", "message_too_large")
    }
    assert len({r["reasons"][0]["detail"] for r in rows[10:]}) == 1
    assert len(rows) == 41 and get_run(db, run_id).error is None


def test_the_recipient_view_and_the_export_show_what_was_attached(
    db: Database, tmp_path: Path
) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, invoices(tmp_path, 1, server.port))
        deliver_now(db, run_id)
    own = (tmp_path / "2026" / "2026-00000.pdf").read_bytes()
    detail = recipient_detail(db, run_id, 0)
    from core.attachments.evidence import sent_lines

    [line] = sent_lines(detail.attachments, detail.state, detail.sent_at)
    assert line.startswith(f"sent 2026-00000.pdf, {len(own)} bytes, ")
    assert line.endswith(f"· sha256 {sha256(own)}")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=export_rows.COLUMNS)
    writer.writeheader()
    writer.writerows(export_rows.rows(db, run_id, Selection()))
    [row] = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert list(row)[-2:] == ["message_id", "attachments"]
    assert row["attachments"] == f"2026-00000.pdf ({len(own)} bytes)"
    assert json.loads(json.dumps(recipient_rows(db, run_id)))[0]["attachments"][0]["bytes"] == len(
        own
    )
    assert get_run(db, run_id).state == "completed"


def test_why_says_what_each_message_carried(db: Database, tmp_path: Path) -> None:
    """The customer drill-down of the command line (``why``) as the console's: each
    attachment sent, its size and when; in JSON the evidence as run show gives it."""
    from core.views.customers import customer_report
    from tui.plan_text import why_text

    with SmtpServer() as server:
        run_id = new_run(db, invoices(tmp_path, 1, server.port))
        deliver_now(db, run_id)
    own = (tmp_path / "2026" / "2026-00000.pdf").read_bytes()
    report = customer_report(db, "C00000", at=parse_instant(AT))
    (delivery,) = report.as_json()["deliveries"]
    assert delivery["attachments"] == [
        {"name": "2026-00000.pdf", "bytes": len(own), "sha256": sha256(own)}
    ]
    sent_at = recipient_detail(db, run_id, 0).sent_at
    assert sent_at is not None
    line = f"sent 2026-00000.pdf, {len(own)} bytes, {sent_at:%Y-%m-%d %H:%M}"
    text = [x.strip() for x in why_text(report).splitlines()]
    assert [x for x in text if "2026-00000.pdf" in x] == [line]
