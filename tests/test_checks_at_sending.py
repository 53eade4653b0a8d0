"""The checks made at the moment of sending (domain.md): an address suppressed since the
run was planned is excluded, never sent; quiet hours count when the message goes on the
wire, not when it was handed to a connection."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import insert, update

from core.clock import FixedClock, parse_instant
from core.delivery.runs import create_run, run_json
from core.storage import Database
from core.storage.models import SmtpProfile, Suppression, table_of
from fixtures.smtp_servers import SmtpServer
from tests.conftest import load_ok
from tests.delivery_support import assert_counts_match_rows, deliver_now, document, states

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
