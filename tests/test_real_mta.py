"""Against a real Postfix 3.7 with STARTTLS and Dovecot SASL (fixtures/real_mta.py).

What a business's own server or a provider's submission port does: the
test and the run say the same hello, a wrong password costs one try,
configuration faults stop the run, and postponed mail is not failed.
In CI (CI=true) these run or fail; elsewhere they are skipped, saying why,
when Postfix and Dovecot cannot be had.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.run_info import get_run
from core.smtp_check import CheckReport, check_profile, load_profile
from core.storage import Database
from core.storage.models import Suppression, table_of
from core.views.run_json import run_json
from fixtures.real_mta import RealMta, unavailable_reason
from tests.attachment_support import pdf_bytes
from tests.delivery_support import assert_counts_match_rows, deliver_now, document, new_run

pytestmark = [pytest.mark.real_mta, pytest.mark.timeout(120)]
PASSWORD_ENV = "MSGRUN_TEST_MTA_PASSWORD"


@pytest.fixture(scope="module")
def mta() -> Iterator[RealMta]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required in CI)")
        pytest.skip(reason)
    with RealMta() as server:
        yield server


def mta_document(mta: RealMta, port: str, addresses: list[str], **profile: Any) -> dict[str, Any]:
    """One customer per address; the profile logs in on the submission port by default."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "security": "starttls",
        "ca_file": str(mta.ca_file),
        "username": mta.user,
        "password_env": PASSWORD_ENV,
        "from_address": mta.user,
        "timeout_seconds": 10,
    }
    settings.update(profile)
    settings = {k: v for k, v in settings.items() if v is not None}
    doc = document(len(addresses), mta.ports[port])
    doc["smtp_profiles"][0] = {"id": "main", "port": mta.ports[port], **settings}
    for customer, address in zip(doc["customers"], addresses, strict=True):
        customer["contacts"][0]["addresses"][0]["address"] = address
    return doc


def smtp_test(db: Database, password: str, to: str | None = None) -> CheckReport:
    return asyncio.run(check_profile(load_profile(db, "main"), {PASSWORD_ENV: password}, to=to))


def failed_step(report: CheckReport) -> tuple[str, str, str | None]:
    """The SMTP step that failed (the sender authentication steps run after it)."""
    [step] = [s for s in report.smtp_steps if not s.ok] or [None]
    assert step is not None, report.as_json()
    return step.step, step.detail, step.hint


def test_the_submission_port_passes_the_test_and_delivers(
    mta: RealMta, sqlite_db: Database
) -> None:
    mark = mta.log_mark()
    run_id = new_run(sqlite_db, mta_document(mta, "submission", ["alice@mail.example"] * 3))
    report = smtp_test(sqlite_db, mta.password, to="alice@mail.example")
    assert report.ok, report.as_json()
    delivery = deliver_now(sqlite_db, run_id, environ={PASSWORD_ENV: mta.password})
    assert delivery.state == "completed"
    mta.wait_for(lambda: len(mta.delivered("alice@mail.example")) == 4, "4 messages for alice")
    ids = {message_from_bytes(m)["Message-ID"] for m in mta.delivered("alice@mail.example")}
    assert {r["message_id"] for r in run_json(sqlite_db, run_id)["recipients"]} < ids
    # One mechanism, PLAIN, though Dovecot offers CRAM-MD5 first; never a failed try.
    methods = {
        line.split("sasl_method=")[1].split(",")[0] for line in mta.log_lines("sasl_method=", mark)
    }
    assert methods == {"PLAIN"}
    assert mta.log_lines("authentication failed", mark) == []


def test_an_unknown_user_is_a_hard_bounce(mta: RealMta, sqlite_db: Database) -> None:
    doc = mta_document(mta, "submission", ["bob@mail.example", "nobody@mail.example"])
    run_id = new_run(sqlite_db, doc)
    delivery = deliver_now(sqlite_db, run_id, environ={PASSWORD_ENV: mta.password})
    assert delivery.state == "completed_with_failures"
    recipients = {r["address"]: r for r in run_json(sqlite_db, run_id)["recipients"]}
    assert recipients["bob@mail.example"]["state"] == "sent"
    nobody = recipients["nobody@mail.example"]
    assert (nobody["state"], nobody["smtp_code"]) == ("failed", 550)
    assert "5.1.1" in nobody["smtp_reply"]
    with sqlite_db.connect() as connection:
        suppressed = connection.execute(select(table_of(Suppression))).all()
    assert [(s.address, s.reason) for s in suppressed] == [("nobody@mail.example", "hard_bounce")]


def test_a_wrong_password_ends_the_run_after_one_try(mta: RealMta, sqlite_db: Database) -> None:
    mark = mta.log_mark()
    doc = mta_document(mta, "submission", ["carol@mail.example"] * 6, max_connections=4)
    run_id = new_run(sqlite_db, doc)
    delivery = deliver_now(sqlite_db, run_id, environ={PASSWORD_ENV: "wrong"})
    assert delivery.state == "failed"
    assert f"refused the credentials of {mta.user}: 535" in (delivery.error or "")
    counts = assert_counts_match_rows(sqlite_db, run_id)
    assert counts["pending"] == 6 and counts["failed"] == 0
    mta.wait_for(lambda: mta.log_lines("authentication failed", mark), "the failed AUTH logged")
    time.sleep(1.0)  # a second failed AUTH, were there one, would be logged by now
    assert len(mta.log_lines("authentication failed", mark)) == 1
    # The password fixed, a restart sends them.
    delivery = deliver_now(sqlite_db, run_id, environ={PASSWORD_ENV: mta.password})
    assert delivery.state == "completed"
    mta.wait_for(lambda: len(mta.delivered("carol@mail.example")) == 6, "6 messages for carol")


def test_security_none_on_the_encrypt_only_port_ends_the_run(
    mta: RealMta, sqlite_db: Database
) -> None:
    doc = mta_document(
        mta,
        "encrypt",
        ["alice@mail.example"] * 3,
        security="none",
        username=None,
        password_env=None,
    )
    run_id = new_run(sqlite_db, doc)
    delivery = deliver_now(sqlite_db, run_id)
    assert delivery.state == "failed"
    assert "530 5.7.0 Must issue a STARTTLS command first" in (delivery.error or "")
    assert assert_counts_match_rows(sqlite_db, run_id)["pending"] == 3
    step, detail, hint = failed_step(smtp_test(sqlite_db, "", to="alice@mail.example"))
    assert (step, detail) == ("mail_from", "530 5.7.0 Must issue a STARTTLS command first")
    assert hint is not None and "use security starttls" in hint


def test_a_user_name_where_no_auth_is_offered_ends_the_run(
    mta: RealMta, sqlite_db: Database
) -> None:
    for port, security in (("no_auth", "starttls"), ("encrypt", "none")):
        doc = mta_document(mta, port, ["alice@mail.example"] * 2, security=security)
        run_id = new_run(sqlite_db, doc)
        delivery = deliver_now(sqlite_db, run_id, environ={PASSWORD_ENV: mta.password})
        assert delivery.state == "failed", port
        assert "offers no AUTH" in (delivery.error or ""), port
        assert assert_counts_match_rows(sqlite_db, run_id)["pending"] == 2, port
        step, detail, hint = failed_step(smtp_test(sqlite_db, mta.password))
        assert (step, detail) == ("auth", "the server offers no AUTH"), port
        # Before STARTTLS, Postfix offers no AUTH: the hint says to use it.
        assert hint is not None and ("use security starttls" in hint) == (security == "none")
        assert get_run(sqlite_db, run_id).state == "failed"


@pytest.mark.parametrize("helo", [None, "mx.pools.example", "localhost"])
def test_the_test_and_a_run_agree_on_the_strict_helo_port(
    mta: RealMta, sqlite_db: Database, helo: str | None
) -> None:
    doc = mta_document(
        mta,
        "strict_helo",
        ["dave@mail.example"],
        security="none",
        username=None,
        password_env=None,
        helo_name=helo,
    )
    run_id = new_run(sqlite_db, doc)
    report = smtp_test(sqlite_db, "", to="dave@mail.example")
    delivery = deliver_now(sqlite_db, run_id)
    if helo == "localhost":
        assert failed_step(report)[:1] == ("rcpt_to",)
        assert "need fully-qualified hostname" in failed_step(report)[1]
        (recipient,) = run_json(sqlite_db, run_id)["recipients"]
        assert recipient["smtp_code"] == 504
        assert "need fully-qualified hostname" in recipient["smtp_reply"]
    else:
        assert report.ok, report.as_json()
        assert delivery.state == "completed"


def test_postponed_by_a_rate_limit_all_end_sent_once(mta: RealMta, sqlite_db: Database) -> None:
    doc = mta_document(
        mta,
        "rate",
        ["erin@mail.example"] * 6,
        security="none",
        username=None,
        password_env=None,
        retry_after_seconds=[2, 5, 10],
    )
    run_id = new_run(sqlite_db, doc)
    mark = mta.log_mark()
    delivery = deliver_now(sqlite_db, run_id)
    deadline = time.monotonic() + 60
    while delivery.state == "waiting" and time.monotonic() < deadline:
        # Only on a slow machine: the delivery ended before the next retry came due.
        time.sleep(1)
        delivery = deliver_now(sqlite_db, run_id)
    assert delivery.state == "completed"
    recipients = run_json(sqlite_db, run_id)["recipients"]
    assert sorted(r["attempts"] > 1 for r in recipients) == [False] * 3 + [True] * 3
    assert mta.log_lines("Message delivery request rate limit exceeded", mark)
    mta.wait_for(lambda: len(mta.delivered("erin@mail.example")) == 6, "6 messages for erin")
    ids = [message_from_bytes(m)["Message-ID"] for m in mta.delivered("erin@mail.example")]
    assert sorted(ids) == sorted(r["message_id"] for r in recipients)


def test_each_customers_invoice_arrives_byte_for_byte_in_their_own_mailbox(
    mta: RealMta, db: Database, tmp_path: Path
) -> None:
    """The attachment decoded from the Maildir Postfix delivered into is the customer's
    own file, byte for byte; nobody gets another customer's invoice (SQLite and PostgreSQL)."""
    users = ["carol@mail.example", "dave@mail.example", "erin@mail.example"]
    doc = mta_document(mta, "submission", users)
    doc["organisation"]["documents_folder"] = str(tmp_path)
    own = {}
    for i, (user, item) in enumerate(zip(users, doc["documents"], strict=True)):
        # Binary bytes of every value, and sizes that end base64 lines differently.
        data = pdf_bytes(f"invoice for {user}", 3000 + i) + bytes(range(256)) * (i + 1)
        (tmp_path / f"{item['number']}.pdf").write_bytes(data)
        item["files"] = [{"path": f"{item['number']}.pdf", "name": f"Rechnung für {user}.pdf"}]
        own[user] = data
    run_id = new_run(db, doc)
    delivery = deliver_now(db, run_id, environ={PASSWORD_ENV: mta.password})
    assert delivery.state == "completed", delivery.error
    shown = run_json(db, run_id)["recipients"]
    recorded = {r["address"]: r["attachments"] for r in shown}
    message_ids = {r["address"]: r["message_id"] for r in shown}

    def arrived(user: str) -> bytes | None:
        """This run's message in the mailbox, known by its Message-ID (unique: the run's
        token is in it). Not by counting: another test's message to the same mailbox
        may land at any moment (the queue is Postfix's), and Maildir names sort by the
        second, then by inode, so a newer message may sort before an older one."""
        wanted = message_ids[user].strip("<>")
        for raw in mta.delivered(user):
            headers = BytesHeaderParser().parsebytes(raw)
            if str(headers.get("Message-ID", "")).strip().strip("<>") == wanted:
                return raw
        return None

    for user in users:
        mta.wait_for(lambda u=user: arrived(u) is not None, f"the message for {user}")
    for user in users:
        raw = arrived(user)
        assert raw is not None
        message = message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        [attachment] = list(message.iter_attachments())
        assert attachment.get_filename() == f"Rechnung für {user}.pdf"
        assert attachment.get_payload(decode=True) == own[user]
        assert recorded[user] == [
            {
                "name": f"Rechnung für {user}.pdf",
                "bytes": len(own[user]),
                "sha256": hashlib.sha256(own[user]).hexdigest(),
            }
        ]
        payload = attachment.get_payload(decode=True)
        assert isinstance(payload, bytes)
        assert all(f"invoice for {other}".encode() not in payload for other in own if other != user)
