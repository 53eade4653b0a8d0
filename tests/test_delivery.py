"""Delivery against real SMTP servers (aiosmtpd on loopback, faults injected)."""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
import time
from pathlib import Path

import pytest
import trustme
from sqlalchemy import select, update

from core.clock import FixedClock, SystemClock, parse_instant
from core.delivery.deliver import STOP_POLL_SECONDS, deliver
from core.delivery.starting import create_run, request_stop
from core.planner.plan import make_plan
from core.run_info import get_run
from core.storage import Database
from core.storage.models import Contact, Definition, History, Suppression, table_of
from core.views.run_json import run_json
from fixtures.smtp_servers import Faults, SmtpServer, free_port
from tests.conftest import load_ok
from tests.delivery_support import (
    AT,
    assert_counts_match_rows,
    deliver_now,
    document,
    new_run,
    states,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("sending_ways")]


def test_a_run_delivers_exactly_the_included_recipients(db: Database) -> None:
    with SmtpServer() as server:
        doc = document(40, server.port)
        doc["customers"][3]["contacts"][0]["allow_email"] = False  # excluded
        doc["suppressions"] = [
            {"address": "P4@example.org", "reason": "manual", "since": "2026-01-01"}
        ]
        run_id = new_run(db, doc)
        delivery = deliver_now(db, run_id)
    assert delivery.state == "completed"
    counts = assert_counts_match_rows(db, run_id)
    assert (counts["sent"], counts["excluded"]) == (38, 2)
    received = server.recipients()
    assert set(received) == {f"p{i}@example.org" for i in range(40)} - {
        "p3@example.org",
        "p4@example.org",
    }
    assert set(received.values()) == {1}
    # Each message carries the recipient's own Message-ID, as stored.
    shown = {r["address"]: r for r in run_json(db, run_id)["recipients"]}
    for message in server.messages():
        assert shown[message.recipient]["message_id"] == message.message_id
        assert shown[message.recipient]["smtp_code"] == 250
        assert shown[message.recipient]["smtp_reply"].startswith("2.0.0 Ok: queued as")


def test_the_message_is_well_formed(db: Database) -> None:
    with SmtpServer() as server:
        doc = document(2, server.port, from_name="Zoë's Pools")
        doc["definitions"][0]["template"] = {
            "subject": "Fatura {{ document.label }} — {{ customer.name }}",
            "text": "Olá {{ contact.name }}",
            "html": "<p>Olá {{ contact.name }}</p>",
        }
        load_ok(db, doc)
        # The import refuses line breaks in names and subjects; a database may
        # still hold them (written before, or by hand): no data field adds a header.
        contact, definition = table_of(Contact), table_of(Definition)
        with db.connect() as connection:
            connection.execute(
                update(contact)
                .where(contact.c.id == "C00000-1")
                .values(name="José\r\nBcc: evil@example.org")
            )
            connection.execute(
                update(definition).values(
                    template_subject="Fatura {{ document.label }} — {{ customer.name }}"
                    "\r\nBcc: evil@example.org"
                )
            )
        deliver_now(db, create_run(db, "inv", parse_instant(AT), SystemClock()))
    message = next(m for m in server.messages() if m.recipient == "p0@example.org")
    parsed = message.message
    assert parsed["Subject"] == "Fatura 2026-00000 — Customer 0 Bcc: evil@example.org"
    assert parsed["From"].addresses[0].display_name == "Zoë's Pools"
    assert parsed["To"].addresses[0].display_name == "José Bcc: evil@example.org"
    assert parsed["Bcc"] is None, "no data field may add a header"
    # The whole message is ASCII: headers in RFC 2047, bodies quoted-printable.
    raw = message.data.decode("ascii")
    assert "=?utf-8?" in raw
    assert parsed.get_content_type() == "multipart/alternative"
    text_part, html_part = parsed.iter_parts()
    assert text_part.get_content().startswith("Olá José")
    assert html_part.get_content().startswith("<p>Olá José")


def test_a_template_error_fails_that_recipient_only(db: Database) -> None:
    with SmtpServer() as server:
        doc = document(3, server.port)
        doc["definitions"][0]["template"]["text"] = (
            "{% if customer.id == 'C00001' %}{{ document.no_such_field.x }}{% endif %}Hi"
        )
        run_id = new_run(db, doc)
        assert deliver_now(db, run_id).state == "completed_with_failures"
    recipients = {r["address"]: r for r in run_json(db, run_id)["recipients"]}
    assert recipients["p1@example.org"]["state"] == "failed"
    assert "template error" in recipients["p1@example.org"]["error"]
    assert server.recipients() == {"p0@example.org": 1, "p2@example.org": 1}


def test_replies_and_faults_end_in_the_right_state(db: Database) -> None:
    faults = Faults(
        rcpt={
            "p1@example.org": ["450 4.2.1 mailbox busy"],
            "p2@example.org": ["550 5.1.1 no such user"],
            "p3@example.org": ["451 4.3.0 try later"] * 1000,
            "p4@example.org": ["554 5.7.1 relay denied"],
            "p9@example.org": ["disconnect"],  # dropped before the data: tried again
        },
        data={
            "p5@example.org": ["disconnect"],  # dropped after the data: in doubt
            "p6@example.org": ["421 4.3.2 closing down"],
            "p7@example.org": ["452 4.3.1 out of storage"],
        },
    )
    with SmtpServer(faults=faults) as server:
        # Retried 0.05 s apart for 1 s after the first attempt, then given up.
        run_id = new_run(db, document(10, server.port, retry_for_seconds=1.0))
        delivery = deliver_now(db, run_id)
    assert delivery.state == "completed_with_failures"
    recipients = {r["address"]: r for r in run_json(db, run_id)["recipients"]}
    p3 = recipients.pop("p3@example.org")
    assert p3["state"] == "failed" and p3["attempts"] >= 2
    # How long it took depends on the machine; that it gave up, and when, does not.
    assert re.match(rf"gave up after {p3['attempts']} attempts in \d+ s", p3["error"])
    expect = {
        "p0@example.org": ("sent", 1),
        "p1@example.org": ("sent", 2),
        "p2@example.org": ("failed", 1),
        "p4@example.org": ("failed", 1),
        "p5@example.org": ("unknown", 1),
        "p6@example.org": ("sent", 2),
        "p7@example.org": ("sent", 2),
        "p8@example.org": ("sent", 1),
        "p9@example.org": ("sent", 2),
    }
    assert {a: (r["state"], r["attempts"]) for a, r in recipients.items()} == expect
    assert recipients["p2@example.org"]["smtp_code"] == 550
    assert "after the message's data" in recipients["p5@example.org"]["error"]
    # Reconnecting after 421 or a dropped connection neither loses nor doubles the message.
    assert server.recipients() == {a: 1 for a, (s, _) in expect.items() if s == "sent"}
    # The mailbox that does not exist is suppressed from now on.
    with db.connect() as connection:
        suppressed = connection.execute(select(table_of(Suppression))).all()
    assert [(s.address, s.reason) for s in suppressed] == [("p2@example.org", "hard_bounce")]
    assert_counts_match_rows(db, run_id)


def test_retries_keep_the_message_id(db: Database) -> None:
    faults = Faults(
        rcpt={"p0@example.org": ["disconnect"]}, data={"p0@example.org": ["451 4.3.0 later"]}
    )
    with SmtpServer(faults=faults) as server:
        run_id = new_run(db, document(1, server.port))
        deliver_now(db, run_id)
    (message,) = server.messages()
    (recipient,) = run_json(db, run_id)["recipients"]
    assert recipient["attempts"] == 3
    assert message.message_id == recipient["message_id"]


def test_a_line_lost_after_the_data_leaves_the_recipient_unknown_never_sent_twice_unasked(
    db: Database,
) -> None:
    # The server takes p2's message (its mailbox has it) and dies before it replies.
    faults = Faults(data={"p2@example.org": ["keep-and-disconnect"]})
    with SmtpServer(faults=faults) as server:
        run_id = new_run(db, document(8, server.port, max_connections=1))
        assert deliver_now(db, run_id).state == "completed_with_failures"
        shown = {r["address"]: r for r in run_json(db, run_id)["recipients"]}
        p2 = shown.pop("p2@example.org")
        assert (p2["state"], p2["attempts"]) == ("unknown", 1)
        assert "may have been delivered" in p2["error"] and "--resend-unknown" in p2["error"]
        # The others on that line, before it dropped and after, are sent once each.
        assert {r["state"] for r in shown.values()} == {"sent"}
        assert server.recipients() == {f"p{i}@example.org": 1 for i in range(8)}
        (kept,) = [m for m in server.messages() if m.recipient == "p2@example.org"]
        assert kept.message_id == p2["message_id"]
        # Never tried again automatically, by a restart either.
        assert deliver_now(db, run_id).state == "completed_with_failures"
        assert server.count("p2@example.org") == 1
        assert states(db, run_id)["p2@example.org"] == "unknown"
        # Only the operator's explicit choice sends it again, with the same Message-ID.
        assert deliver_now(db, run_id, resend_unknown=True).state == "completed"
        copies = [m for m in server.messages() if m.recipient == "p2@example.org"]
    assert [m.message_id for m in copies] == [p2["message_id"]] * 2
    assert len(server.messages()) == 9
    assert_counts_match_rows(db, run_id)


def test_the_reply_to_the_data_is_awaited_beyond_the_profiles_timeout(db: Database) -> None:
    # The server takes longer to answer the end of the data than the profile's
    # timeout: a content filter at work. RFC 5321 asks for 10 minutes.
    with SmtpServer(faults=Faults(data_delay=2.5)) as server:
        run_id = new_run(db, document(1, server.port, timeout_seconds=1.0, retry_for_seconds=2.0))
        assert deliver_now(db, run_id).state == "completed"
    (recipient,) = run_json(db, run_id)["recipients"]
    assert (recipient["state"], recipient["attempts"]) == ("sent", 1)
    assert server.recipients() == {"p0@example.org": 1}


def test_a_server_that_refuses_everyone_fails_the_run_after_twenty_and_leaves_the_rest(
    db: Database,
) -> None:
    # Every RCPT answered "550 5.7.1 Relaying denied" (each with its address). At
    # 100 msg/s on 2 connections, at most a few more than the 20 are in flight
    # (policy.most_in_doubt) when the run fails: the rest are never tried.
    total = 80
    faults = Faults(
        rcpt={
            f"p{i}@example.org": [f"550 5.7.1 <p{i}@example.org>: Relaying denied"]
            for i in range(total)
        }
    )
    with SmtpServer(faults=faults) as server:
        doc = document(total, server.port, max_connections=2, rate_per_second=100)
        run_id = new_run(db, doc)
        delivery = deliver_now(db, run_id)
        tried = {address for (kind, address) in server.attempts if kind == "rcpt"}
    assert delivery.state == "failed"
    run = get_run(db, run_id)
    assert run.state == "failed"
    assert "20 recipients in a row" in (run.error or "")
    assert "550 5.7.1" in (run.error or "") and "Relaying denied" in (run.error or "")
    counts = assert_counts_match_rows(db, run_id)
    assert 20 <= counts["failed"] < total
    assert counts["pending"] == total - counts["failed"]
    shown = run_json(db, run_id)["recipients"]
    failed = {r["address"] for r in shown if r["state"] == "failed"}
    assert failed == tried  # the failed are exactly those the server refused
    assert all(r["attempts"] == 0 for r in shown if r["state"] == "pending")
    assert server.messages() == []


def test_a_template_that_fails_for_everyone_fails_the_run_after_twenty(db: Database) -> None:
    """The template breaks after the run was made (`run start` refuses one that fails
    for everyone): the delivery ends the run at the twentieth failure in a row."""
    total = 80
    with SmtpServer() as server:
        doc = document(total, server.port, max_connections=2, rate_per_second=100)
        run_id = new_run(db, doc)
        definition = table_of(Definition)
        with db.connect() as connection:
            connection.execute(
                update(definition).values(template_text="{{ document.no_such_field.x }}")
            )
        delivery = deliver_now(db, run_id)
    assert delivery.state == "failed"
    error = get_run(db, run_id).error or ""
    assert "template failed for 20 recipients in a row" in error
    assert "fault of the definition" in error
    counts = assert_counts_match_rows(db, run_id)
    # Exactly the 20: a message that fails to build once the run has its fault (on the
    # other connection, or later in the same window) is left pending, not failed.
    assert counts["failed"] == 20
    assert counts["pending"] == total - 20
    assert server.messages() == []


def test_refused_credentials_fail_the_run_not_each_recipient(db: Database) -> None:
    with SmtpServer(users={"billing": "right"}) as server:
        doc = document(5, server.port, username="billing", password_env="PW")
        run_id = new_run(db, doc)
        delivery = deliver_now(db, run_id, environ={"PW": "wrong"})
    assert delivery.state == "failed"
    run = get_run(db, run_id)
    assert run.state == "failed" and "refused the credentials of billing: 535" in (run.error or "")
    assert assert_counts_match_rows(db, run_id)["pending"] == 5
    assert server.messages() == []


def test_the_right_password_is_used(db: Database) -> None:
    with SmtpServer(users={"billing": "right"}) as server:
        doc = document(3, server.port, username="billing", password_env="PW")
        run_id = new_run(db, doc)
        assert deliver_now(db, run_id, environ={"PW": "right"}).state == "completed"
    assert len(server.messages()) == 3


def test_a_missing_password_fails_the_run(db: Database) -> None:
    with SmtpServer(users={"billing": "right"}) as server:
        run_id = new_run(db, document(2, server.port, username="billing", password_env="PW"))
        delivery = deliver_now(db, run_id, environ={})
    assert delivery.state == "failed"
    assert "PW" in (delivery.error or "") and "not set" in (delivery.error or "")


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def server_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_an_untrusted_certificate_fails_the_run(
    db: Database, certificate_authority: trustme.CA
) -> None:
    """The server's certificate comes from a CA the client does not trust."""
    with SmtpServer(
        security="starttls", certificate_context=server_tls(certificate_authority)
    ) as server:
        run_id = new_run(db, document(3, server.port, security="starttls"))
        delivery = deliver_now(db, run_id)
    assert delivery.state == "failed"
    assert "certificate verify failed" in (delivery.error or "")
    assert server.messages() == []


def test_a_trusted_certificate_delivers(
    db: Database, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    server_context = server_tls(certificate_authority)
    ca_file = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca_file))
    for security in ("starttls", "tls"):
        with SmtpServer(security=security, certificate_context=server_context) as server:
            doc = document(3, server.port, security=security, ca_file=str(ca_file))
            run_id = new_run(db, doc)
            assert deliver_now(db, run_id).state == "completed", security
        assert len(server.messages()) == 3, security


def test_a_closed_port_retries_then_fails(db: Database) -> None:
    run_id = new_run(db, document(2, free_port(), retry_for_seconds=0.5))
    delivery = deliver_now(db, run_id)
    assert delivery.state == "completed_with_failures"
    for recipient in run_json(db, run_id)["recipients"]:
        assert recipient["state"] == "failed" and recipient["attempts"] >= 2
        assert "cannot connect" in recipient["error"]


def test_a_server_that_never_answers_times_out(db: Database) -> None:
    with SmtpServer(faults=Faults(banner_delay=30)) as server:
        run_id = new_run(db, document(1, server.port, timeout_seconds=0.3, retry_for_seconds=0.5))
        started = time.monotonic()
        delivery = deliver_now(db, run_id)
    assert delivery.state == "completed_with_failures"
    assert time.monotonic() - started < 10
    (recipient,) = run_json(db, run_id)["recipients"]
    assert recipient["state"] == "failed"


def test_sent_recipients_go_to_the_dedup_ledger(db: Database) -> None:
    with SmtpServer() as server:
        doc = document(3, server.port)
        doc["definitions"][0]["dedup"] = "per_document"
        run_id = new_run(db, doc)
        deliver_now(db, run_id)
    with db.connect() as connection:
        ledger = connection.execute(select(table_of(History))).all()
    assert sorted((h.customer_id, h.document_id, h.run_id) for h in ledger) == [
        ("C00000", "D00000", run_id),
        ("C00001", "D00001", run_id),
        ("C00002", "D00002", run_id),
    ]
    plan = make_plan(db, "inv", parse_instant(AT), environ={})
    assert {c.codes()[0] for c in plan.candidates} == {"already_sent"}
    assert "by run" in plan.candidates[0].reasons[0].detail


def test_held_recipients_wait_for_quiet_hours_to_end(db: Database) -> None:
    clock = FixedClock(parse_instant("2026-11-23T22:00:00+00:00"))
    with SmtpServer() as server:
        doc = document(3, server.port)
        doc["definitions"][0]["quiet_hours"] = {"start": "21:00", "end": "09:00"}
        doc["customers"][0]["timezone"] = "Asia/Tokyo"  # 07:00 there: quiet too
        doc["customers"][1]["timezone"] = "America/New_York"  # 17:00 there: not quiet
        run_id = new_run(db, doc, at="2026-11-23T22:00:00+00:00", clock=clock)
        assert deliver_now(db, run_id, clock).state == "waiting"
        assert states(db, run_id) == {
            "p0@example.org": "held",
            "p1@example.org": "sent",
            "p2@example.org": "held",
        }
        clock.set(parse_instant("2026-11-24T00:00:01+00:00"))  # 09:00:01 in Tokyo
        assert deliver_now(db, run_id, clock).state == "waiting"
        assert states(db, run_id)["p0@example.org"] == "sent"
        clock.set(parse_instant("2026-11-24T09:00:00+00:00"))  # 09:00 in UTC
        assert deliver_now(db, run_id, clock).state == "completed"
    assert server.recipients() == {"p0@example.org": 1, "p1@example.org": 1, "p2@example.org": 1}
    assert_counts_match_rows(db, run_id)


def _deliver_in_thread(
    db: Database, run_id: int, **options: object
) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def target() -> None:
        outcome.append(deliver_now(db, run_id, **options))

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def wait_until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_stop_leaves_the_unsent_pending_and_restart_sends_exactly_the_rest(db: Database) -> None:
    # The server holds every DATA until the delivery has seen the stop: what it had
    # under way when asked then goes through, whatever the machine's speed.
    gate = threading.Event()
    with SmtpServer(faults=Faults(data_gate=gate)) as server:
        run_id = new_run(db, document(120, server.port))
        thread, outcome = _deliver_in_thread(db, run_id)
        wait_until(lambda: get_run(db, run_id).counts["sending"] > 0)
        stopped = request_stop(db, run_id, SystemClock())
        assert stopped.recorded and stopped.run.state == "stopping"
        time.sleep(3 * STOP_POLL_SECONDS)  # the delivery looks for a stop this often
        gate.set()
        thread.join(30)
        assert outcome[0].state == "stopped"  # type: ignore[attr-defined]
        counts = assert_counts_match_rows(db, run_id)
        # Nothing in flight was lost: every message the server took is `sent`.
        assert counts["sent"] == len(server.messages()) > 0
        assert counts["sending"] == counts["unknown"] == 0
        assert counts["pending"] == 120 - counts["sent"] > 0
        assert get_run(db, run_id).stop_requested_by is not None
        # Restart: exactly the rest.
        assert deliver_now(db, run_id).state == "completed"
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(120)}


def test_a_local_stop_event_stops_gracefully(db: Database) -> None:
    with SmtpServer(faults=Faults(data_delay=0.02)) as server:
        run_id = new_run(db, document(60, server.port))

        async def main() -> str:
            stop = asyncio.Event()
            task = asyncio.create_task(deliver(db, run_id, SystemClock(), stop=stop, environ={}))
            while len(server.messages()) < 10:
                await asyncio.sleep(0.01)
            stop.set()
            return (await task).state

        assert asyncio.run(main()) == "stopped"
        counts = assert_counts_match_rows(db, run_id)
        assert counts["sent"] == len(server.messages()) and counts["sending"] == 0


def test_stopping_a_run_nobody_delivers_is_immediate(db: Database) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, document(3, server.port))
    outcome = request_stop(db, run_id, SystemClock())
    assert outcome.run.state == "stopped"
    again = request_stop(db, run_id, SystemClock())
    assert not again.recorded


def test_restarting_a_completed_run_sends_nothing(db: Database) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, document(3, server.port))
        deliver_now(db, run_id)
        assert deliver_now(db, run_id).state == "completed"
    assert len(server.messages()) == 3


def test_a_live_lease_keeps_others_out(db: Database) -> None:
    from core.delivery import registry
    from core.delivery.deliver import LeaseHeld

    with SmtpServer() as server:
        run_id = new_run(db, document(2, server.port))
        with db.connect() as connection:
            assert registry.acquire_lease(connection, run_id, "someone:1", SystemClock().now())
        with pytest.raises(LeaseHeld):
            deliver_now(db, run_id)
        assert server.messages() == []


def test_recovery_turns_sending_into_unknown_and_never_resends_it_unasked(db: Database) -> None:
    from core.delivery import queries, transitions

    with SmtpServer() as server:
        run_id = new_run(db, document(4, server.port))
        with db.connect() as connection:
            now = SystemClock().now()
            due = queries.load_due(connection, run_id, now, 2)
            transitions.mark_sending(
                connection, run_id, due, now
            )  # a process marked two `sending`, then died
        assert deliver_now(db, run_id).state == "completed_with_failures"
        counts = assert_counts_match_rows(db, run_id)
        assert (counts["sent"], counts["unknown"]) == (2, 2)
        assert len(server.messages()) == 2
        unknown = [r for r in run_json(db, run_id)["recipients"] if r["state"] == "unknown"]
        assert "may or may not have reached the server" in unknown[0]["error"]
        # Only an explicit choice sends them.
        assert deliver_now(db, run_id).state == "completed_with_failures"
        assert len(server.messages()) == 2
        assert deliver_now(db, run_id, resend_unknown=True).state == "completed"
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(4)}


def test_counts_are_cheap_to_read_while_a_run_delivers(db: Database) -> None:
    with SmtpServer(faults=Faults(data_delay=0.03)) as server:
        run_id = new_run(db, document(120, server.port))
        thread, _ = _deliver_in_thread(db, run_id)
        seen = []
        while thread.is_alive():
            run = get_run(db, run_id)
            seen.append(run.counts["sent"])
            assert sum(run.counts.values()) == 120
            time.sleep(0.05)
        thread.join()
    assert seen == sorted(seen), "sent never goes backwards"
    assert len(set(seen)) > 2, "progress is visible while the run delivers"


def test_connections_are_reused_and_limited(db: Database) -> None:
    with SmtpServer(faults=Faults(data_delay=0.01)) as server:
        run_id = new_run(db, document(60, server.port, max_connections=3))
        # The server's readiness probe counts as one connection.
        before = server.most_connections
        assert deliver_now(db, run_id).state == "completed"
    assert server.most_connections <= max(before, 3)
    assert len(server.messages()) == 60


def test_the_rate_limit_spaces_messages_evenly(db: Database) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, document(30, server.port, max_connections=4, rate_per_second=40))
        started = time.monotonic()
        deliver_now(db, run_id)
        took = time.monotonic() - started
    assert len(server.messages()) == 30
    # 30 messages at 40 a second take at least 29 intervals of 25 ms, whatever the
    # number of connections. Measured around the whole delivery, a lower bound that
    # a slow or busy machine only makes longer (the span between the first and the
    # last arrival at the server shrinks when the first is the one held up).
    assert took >= 29 * 0.025 * 0.9


def test_smtputf8_only_when_the_address_needs_it_and_the_server_offers_it(db: Database) -> None:
    for offered in (True, False):
        with SmtpServer(smtputf8=offered) as server:
            doc = document(2, server.port)
            doc["customers"][1]["contacts"][0]["addresses"][0]["address"] = "josé@exemplo.com.br"
            run_id = new_run(db, doc)
            deliver_now(db, run_id)
        recipients = {r["address"]: r for r in run_json(db, run_id)["recipients"]}
        assert recipients["p0@example.org"]["state"] == "sent"
        unicode_recipient = recipients["josé@exemplo.com.br"]
        if offered:
            assert unicode_recipient["state"] == "sent"
            assert server.count("josé@exemplo.com.br") == 1
        else:
            assert unicode_recipient["state"] == "failed"
            # msgrun's own verdict, said to be msgrun's (the server never saw the address).
            assert unicode_recipient["smtp_reply"] == (
                "msgrun: the address needs SMTPUTF8, which the server does not offer"
            )
