"""The checks made at the moment of sending (domain.md): an address suppressed since the
run was planned, or a recipient whose preference an unsubscribe turned off since
(inbox.md), is excluded, never sent; quiet hours count when the message goes on the
wire, not when it was handed to a connection."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from core.clock import FixedClock, parse_instant
from core.delivery.starting import create_run
from core.storage import Database
from core.storage.models import Recipient, SmtpProfile, Suppression, table_of
from core.unsubscribe.records import record, target_of
from core.unsubscribe.tokens import database_secret, make_token
from core.views.run_json import run_json
from fixtures.smtp_servers import SmtpServer
from tests.conftest import load_ok
from tests.delivery_support import assert_counts_match_rows, deliver_now, document, states
from tests.test_unsubscribe import broadcast_document

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("sending_ways")]


def suppress(db: Database, address: str, reason: str, **values: object) -> None:
    with db.connect() as connection:
        connection.execute(
            insert(table_of(Suppression)).values(
                address_lower=address.lower(),
                address=address,
                reason=reason,
                since=date(2026, 11, 29),
                **values,
            )
        )


def test_an_address_suppressed_while_its_run_waits_is_excluded_with_that_reason(
    db: Database,
) -> None:
    clock = FixedClock(parse_instant("2026-11-28T09:00:00+00:00"))
    at = parse_instant("2026-11-30T10:00:00+00:00")
    with SmtpServer() as server:
        load_ok(db, document(4, server.port))
        run_id = create_run(db, "inv", at, clock)  # scheduled: held until `at`
        assert deliver_now(db, run_id, clock).state == "waiting"
        assert set(states(db, run_id).values()) == {"held"}
        # While it waits: a hard bounce read back, a complaint, a manual entry.
        suppress(
            db, "p1@example.org", "hard_bounce", report_id=7, run_id=3, detail="5.1.1 user unknown"
        )
        suppress(db, "P2@Example.org", "spam_complaint")
        suppress(db, "p3@example.org", "manual")
        clock.set(at)
        assert deliver_now(db, run_id, clock).state == "completed"
    assert server.recipients() == {"p0@example.org": 1}
    shown = {r["address"]: r for r in run_json(db, run_id)["recipients"]}
    assert {a: r["state"] for a, r in shown.items()} == {
        "p0@example.org": "sent",
        "p1@example.org": "excluded",
        "p2@example.org": "excluded",
        "p3@example.org": "excluded",
    }
    for address, said in (
        ("p1@example.org", "hard_bounce since 2026-11-29, from a bounce report on run 3"),
        ("p2@example.org", "(listed as P2@Example.org): spam_complaint since 2026-11-29"),
        ("p3@example.org", "manual since 2026-11-29"),
    ):
        (reason,) = shown[address]["reasons"]
        assert reason["code"] == "suppressed"
        assert said in reason["detail"]
        assert shown[address]["attempts"] == 0
    assert_counts_match_rows(db, run_id)


def test_an_address_suppressed_during_a_pending_run_is_not_sent(db: Database) -> None:
    with SmtpServer() as server:
        load_ok(db, document(3, server.port))
        run_id = create_run(
            db,
            "inv",
            parse_instant("2026-11-23T10:00:00+00:00"),
            FixedClock(parse_instant("2026-11-23T10:00:00+00:00")),
        )
        suppress(db, "p0@example.org", "manual")
        assert deliver_now(db, run_id).state == "completed"
    assert set(server.recipients()) == {"p1@example.org", "p2@example.org"}
    assert states(db, run_id)["p0@example.org"] == "excluded"
    assert_counts_match_rows(db, run_id)


def test_quiet_hours_that_begin_while_messages_wait_their_turn_hold_them(db: Database) -> None:
    # One message every 30 s; quiet hours begin 15 s after the delivery starts (its
    # clock stands still: the line counts the time from the moment it was handed the
    # message). The first goes at once; the next two, handed to the connection before
    # 21:00, would go on the wire after it: they are held, not sent.
    start = parse_instant("2026-11-23T20:59:45+00:00")
    with SmtpServer() as server:
        doc = document(3, server.port, max_connections=1, rate_per_second=1 / 30)
        doc["definitions"][0]["quiet_hours"] = {"start": "21:00", "end": "09:00"}
        load_ok(db, doc)
        run_id = create_run(
            db, "inv", parse_instant("2026-11-23T15:00:00+00:00"), FixedClock(start)
        )
        clock = FixedClock(start)
        assert deliver_now(db, run_id, clock).state == "waiting"
        assert server.recipients() == {"p0@example.org": 1}
        shown = {r["address"]: r for r in run_json(db, run_id)["recipients"]}
        assert {a: r["state"] for a, r in shown.items()} == {
            "p0@example.org": "sent",
            "p1@example.org": "held",
            "p2@example.org": "held",
        }
        for address in ("p1@example.org", "p2@example.org"):
            # Moving back to `held` is not an attempt.
            assert shown[address]["attempts"] == 0
            assert shown[address]["send_after"] == "2026-11-24T09:00:00+00:00"
        assert_counts_match_rows(db, run_id)
        # When they end, the held are sent, their messages built then.
        with db.connect() as connection:
            connection.execute(update(table_of(SmtpProfile)).values(rate_per_second=None))
        clock.set(parse_instant("2026-11-24T09:00:00+00:00"))
        assert deliver_now(db, run_id, clock).state == "completed"
        later = [m for m in server.messages() if m.recipient == "p1@example.org"]
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(3)}
    assert [str(m.message["Date"]) for m in later] == ["Tue, 24 Nov 2026 09:00:00 +0000"]
    assert states(db, run_id)["p1@example.org"] == "sent"
    assert_counts_match_rows(db, run_id)


# -- unsubscribed since planning ----------------------------------------------------------


def news_and_updates(port: int, count: int) -> dict[str, Any]:
    """Invoices ("inv"), a broadcast ("news", a contact's preference) and status updates
    ("updates", an address's preference) to ``count`` customers."""
    doc = broadcast_document(port, count)
    doc["definitions"].append(
        {
            "id": "updates",
            "name": "Job updates",
            "kind": "status_update",
            "address_key": "billing",
            "smtp_profile": "main",
            "trigger": {"type": "manual"},
            "dedup": "none",
            "unsubscribe": True,
            "template": {"subject": "Your job", "text": "Hello"},
        }
    )
    return doc


def unsubscribe(db: Database, run_id: int, address: str, at: datetime, how: str) -> None:
    """Record the unsubscribe the token of ``address``'s message of ``run_id`` asks for."""
    recipient = table_of(Recipient)
    with db.connect() as connection:
        position = connection.execute(
            select(recipient.c.position).where(
                recipient.c.run_id == run_id, recipient.c.address == address
            )
        ).scalar_one()
        target = target_of(connection, make_token(database_secret(connection), run_id, position))
        assert target is not None
        assert record(connection, target, how, at)


def arrived(server: SmtpServer, since: int) -> Counter[str]:
    """Who received a message among the server's messages from number ``since`` on."""
    return Counter(m.recipient.lower() for m in server.messages()[since:])


def shown_of(db: Database, run_id: int) -> dict[str, dict[str, Any]]:
    return {r["address"]: r for r in run_json(db, run_id)["recipients"]}


def test_an_unsubscribe_recorded_while_a_scheduled_run_waits_excludes_its_recipient(
    db: Database,
) -> None:
    # Planned on the 28th for the 30th: the unsubscribes of the 29th come after the
    # plan was made, though before the instant it was made for (its planned_at).
    clock = FixedClock(parse_instant("2026-11-28T09:00:00+00:00"))
    at = parse_instant("2026-11-30T10:00:00+00:00")
    with SmtpServer() as server:
        load_ok(db, news_and_updates(server.port, 4))
        first_news = create_run(db, "news", clock.now(), clock)
        first_updates = create_run(db, "updates", clock.now(), clock)
        assert deliver_now(db, first_news, clock).state == "completed"
        assert deliver_now(db, first_updates, clock).state == "completed"
        news = create_run(db, "news", at, clock)
        updates = create_run(db, "updates", at, clock)
        for run_id in (news, updates):
            assert deliver_now(db, run_id, clock).state == "waiting"
            assert set(states(db, run_id).values()) == {"held"}
        mark = len(server.messages())
        # While they wait: p1 stops the news (its contact's preference), p2 the
        # updates to its address (that address's preference).
        unsubscribe(
            db, first_news, "p1@example.org", parse_instant("2026-11-29T14:02:00Z"), "one_click"
        )
        unsubscribe(
            db, first_updates, "p2@example.org", parse_instant("2026-11-29T15:30:00Z"), "mailto"
        )
        clock.set(at)
        assert deliver_now(db, news, clock).state == "completed"
        assert arrived(server, mark) == {f"p{i}@example.org": 1 for i in (0, 2, 3)}
        mark = len(server.messages())
        assert deliver_now(db, updates, clock).state == "completed"
        assert arrived(server, mark) == {f"p{i}@example.org": 1 for i in (0, 1, 3)}
    for run_id, address, code, detail in (
        (
            news,
            "p1@example.org",
            "contact_preference_off",
            f"exclude_from_broadcasts: unsubscribed on 2026-11-29 14:02 UTC "
            f"(one-click, from run {first_news})",
        ),
        (
            updates,
            "p2@example.org",
            "address_preference_off",
            "status_updates: unsubscribed on 2026-11-29 15:30 UTC "
            f"(mailto, from run {first_updates})",
        ),
    ):
        shown = shown_of(db, run_id)
        assert {a: r["state"] for a, r in shown.items() if r["state"] != "sent"} == {
            address: "excluded"
        }
        assert shown[address]["reasons"] == [{"code": code, "detail": detail}]
        assert shown[address]["attempts"] == 0
        assert_counts_match_rows(db, run_id)


def test_an_unsubscribe_during_a_pending_broadcast_is_not_sent(db: Database) -> None:
    clock = FixedClock(parse_instant("2026-11-23T10:00:00+00:00"))
    with SmtpServer() as server:
        load_ok(db, news_and_updates(server.port, 3))
        first = create_run(db, "news", clock.now(), clock)
        assert deliver_now(db, first, clock).state == "completed"
        mark = len(server.messages())
        news = create_run(db, "news", clock.now(), clock)
        clock.set(parse_instant("2026-11-23T10:05:00+00:00"))
        unsubscribe(db, first, "p0@example.org", clock.now(), "feedback_report")
        assert deliver_now(db, news, clock).state == "completed"
        assert arrived(server, mark) == {"p1@example.org": 1, "p2@example.org": 1}
    (reason,) = shown_of(db, news)["p0@example.org"]["reasons"]
    assert reason["code"] == "contact_preference_off"
    assert reason["detail"].endswith(f"(feedback report, from run {first})")
    assert_counts_match_rows(db, news)


def test_an_unsubscribe_from_a_broadcast_does_not_stop_an_invoice_run(db: Database) -> None:
    clock = FixedClock(parse_instant("2026-11-28T09:00:00+00:00"))
    at = parse_instant("2026-11-30T10:00:00+00:00")
    with SmtpServer() as server:
        load_ok(db, news_and_updates(server.port, 2))
        news = create_run(db, "news", clock.now(), clock)
        assert deliver_now(db, news, clock).state == "completed"
        invoices = create_run(db, "inv", at, clock)
        assert deliver_now(db, invoices, clock).state == "waiting"
        mark = len(server.messages())
        unsubscribe(db, news, "p0@example.org", parse_instant("2026-11-29T14:02:00Z"), "one_click")
        clock.set(at)
        assert deliver_now(db, invoices, clock).state == "completed"
        assert arrived(server, mark) == {"p0@example.org": 1, "p1@example.org": 1}
    assert set(states(db, invoices).values()) == {"sent"}


def test_an_unsubscribe_recorded_before_planning_is_excluded_by_the_plan(db: Database) -> None:
    clock = FixedClock(parse_instant("2026-11-28T09:00:00+00:00"))
    with SmtpServer() as server:
        load_ok(db, news_and_updates(server.port, 2))
        first = create_run(db, "news", clock.now(), clock)
        assert deliver_now(db, first, clock).state == "completed"
        mark = len(server.messages())
        unsubscribe(db, first, "p0@example.org", parse_instant("2026-11-28T09:30:00Z"), "one_click")
        clock.set(parse_instant("2026-11-28T10:00:00+00:00"))
        news = create_run(db, "news", clock.now(), clock)
        planned = shown_of(db, news)["p0@example.org"]
        assert planned["state"] == "excluded"
        assert deliver_now(db, news, clock).state == "completed"
        assert arrived(server, mark) == {"p1@example.org": 1}
    # The plan's reason, once: sending did not exclude it again.
    assert shown_of(db, news)["p0@example.org"]["reasons"] == planned["reasons"]
    assert [r["code"] for r in planned["reasons"]] == ["contact_preference_off"]
    assert_counts_match_rows(db, news)
