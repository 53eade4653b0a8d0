"""Every delivery attempt is kept (after-sending.md, The whole answer): its instant, the
reply or the fault, and whether it settled the recipient; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy import select, update

from core.clock import FixedClock, parse_instant
from core.delivery import transitions
from core.storage import Database
from core.storage.database import SCHEMA_REVISION
from core.storage.migrate import alembic_config, current_revision
from core.storage.models import Recipient, RecipientAttempt, table_of
from fixtures.smtp_servers import Faults, SmtpServer
from tests.bounce_support import sent_run
from tests.delivery_support import AT, assert_counts_match_rows, deliver_now, document, new_run

RECIPIENT, ATTEMPT = table_of(Recipient), table_of(RecipientAttempt)


def attempts_by_address(db: Database, run_id: int) -> dict[str, list[tuple[object, ...]]]:
    with db.connect() as connection:
        rows = connection.execute(
            select(
                RECIPIENT.c.address,
                ATTEMPT.c.at,
                ATTEMPT.c.smtp_code,
                ATTEMPT.c.reply,
                ATTEMPT.c.settled,
            )
            .select_from(ATTEMPT.join(RECIPIENT, RECIPIENT.c.id == ATTEMPT.c.recipient_id))
            .where(RECIPIENT.c.run_id == run_id)
            .order_by(ATTEMPT.c.id)
        ).all()
    found: dict[str, list[tuple[object, ...]]] = {}
    for address, at, code, reply, settled in rows:
        found.setdefault(address, []).append((at, code, reply, bool(settled)))
    return found


def test_every_attempt_is_kept_with_its_instant_reply_and_whether_it_settled_the_recipient(
    db: Database,
) -> None:
    start = parse_instant(AT)
    clock = FixedClock(start)
    faults = Faults(
        rcpt={
            "p1@example.org": ["450 4.2.0 Greylisted, try again later"],
            "p2@example.org": ["550 5.1.1 User unknown"],
            "p3@example.org": ["452 4.2.2 Mailbox full", "452 4.2.2 Mailbox full"],
        }
    )
    with SmtpServer(faults=faults) as server:
        run_id = new_run(db, document(4, server.port, retry_after_seconds=[600]), clock=clock)
        assert deliver_now(db, run_id, clock).state == "waiting"  # retries are 8 min away
        later = start + timedelta(minutes=15)
        clock.set(later)
        assert deliver_now(db, run_id, clock).state == "waiting"
        last = start + timedelta(minutes=30)
        clock.set(last)
        assert deliver_now(db, run_id, clock).state == "completed_with_failures"
    log = attempts_by_address(db, run_id)
    assert log["p0@example.org"] == [(start, 250, log["p0@example.org"][0][2], True)]
    assert str(log["p0@example.org"][0][2]).startswith("2.0.0 Ok: queued as")
    assert log["p1@example.org"][0] == (start, 450, "4.2.0 Greylisted, try again later", False)
    assert [(a[0], a[1], a[3]) for a in log["p1@example.org"]] == [
        (start, 450, False),
        (later, 250, True),
    ]
    assert log["p2@example.org"] == [(start, 550, "5.1.1 User unknown", True)]
    assert [(a[0], a[1], a[2], a[3]) for a in log["p3@example.org"]] == [
        (start, 452, "4.2.2 Mailbox full", False),
        (later, 452, "4.2.2 Mailbox full", False),
        (last, 250, log["p3@example.org"][2][2], True),
    ]
    with db.connect() as connection:
        counted = dict(
            connection.execute(
                select(RECIPIENT.c.address, RECIPIENT.c.attempts).where(
                    RECIPIENT.c.run_id == run_id
                )
            ).all()
        )
    assert counted == {address: len(entries) for address, entries in log.items()}
    assert_counts_match_rows(db, run_id)


def test_a_connection_fault_is_kept_as_an_attempt_without_a_code(db: Database) -> None:
    """A line dropped before the data (at RCPT): retried, its attempt kept with the fault."""
    clock = FixedClock(parse_instant(AT))
    with SmtpServer(faults=Faults(rcpt={"p0@example.org": ["disconnect"]})) as server:
        run_id = new_run(db, document(1, server.port, retry_after_seconds=[600]), clock=clock)
        assert deliver_now(db, run_id, clock).state == "waiting"
    [(at, code, reply, settled)] = attempts_by_address(db, run_id)["p0@example.org"]
    assert (at, code, settled) == (clock.now(), None, False)
    assert reply  # the fault, in words


def test_a_recipient_made_unknown_keeps_its_attempt_with_no_reply_known(db: Database) -> None:
    run_id, rows = sent_run(db, 1, state="sending")
    marked = rows[0].updated_at
    with db.connect() as connection:
        transitions.make_unknown(connection, None, marked + timedelta(minutes=5), run_id)
    [(at, code, reply, settled)] = attempts_by_address(db, run_id)["p0@example.org"]
    assert (at, code, settled) == (marked, None, True)
    assert reply == transitions.LOST_ATTEMPT


def test_an_older_database_gives_each_recipient_with_a_reply_its_last_reply_as_its_one_attempt(
    db: Database,
) -> None:
    run_id, rows = sent_run(db, 3)
    config = alembic_config(db)
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    try:
        with db.engine.begin() as connection:
            connection.execute(
                update(RECIPIENT).where(RECIPIENT.c.run_id == run_id).values(attempts=1)
            )
            connection.execute(
                update(RECIPIENT)
                .where(RECIPIENT.c.id == rows[1].id)
                .values(state="failed", smtp_code=550, smtp_reply="5.1.1 User unknown")
            )
            connection.execute(
                update(RECIPIENT)
                .where(RECIPIENT.c.id == rows[2].id)
                .values(state="pending", smtp_code=None, attempts=0, sent_at=None)
            )
    finally:
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    assert current_revision(db) == SCHEMA_REVISION
    log = attempts_by_address(db, run_id)
    assert log == {
        "p0@example.org": [(rows[0].sent_at, 250, None, True)],
        "p1@example.org": [(rows[1].sent_at, 550, "5.1.1 User unknown", True)],
    }
