"""Helpers for the bounce-reading tests: a run whose recipients were sent, and
reports about them made from the hand-written samples in fixtures/bounces/."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from core.storage import Database
from core.storage.models import Recipient
from tests.delivery_support import document, new_run

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
NOW = datetime.fromisoformat("2026-11-28T12:00:00+00:00")


def sent_run(
    db: Database, count: int = 3, sent_at: datetime | None = None, state: str = "sent"
) -> tuple[int, list[Recipient]]:
    """A run of `count` recipients (p0@example.org, …), all `state` at `sent_at`."""
    run_id = new_run(db, document(count, port=2525))
    when = sent_at or NOW - timedelta(hours=1)
    with db.session() as session:
        session.execute(
            update(Recipient)
            .where(Recipient.run_id == run_id)
            .values(state=state, sent_at=when, updated_at=when, smtp_code=250)
        )
        rows = list(
            session.scalars(
                select(Recipient).where(Recipient.run_id == run_id).order_by(Recipient.position)
            )
        )
    return run_id, rows


def postfix_dsn(
    message_id: str | None,
    address: str,
    *,
    delivered_to: str = "bounces@mail.example.com",
    status: str = "5.1.1",
    own_id: str = "<20261128091240.4F1A2C0021@mx.example.com>",
) -> bytes:
    """The Postfix DSN sample, about `address`, returning `message_id` (or no
    Message-ID at all), delivered to `delivered_to`."""
    raw = (SAMPLES / "postfix_dsn.eml").read_text()
    raw = raw.replace("bounces+r7-2s-0000@mail.example.com", delivered_to)
    raw = raw.replace("ana@example.org", address)
    raw = raw.replace("5.1.1", status).replace("550 ", "450 " if status[0] == "4" else "550 ")
    raw = raw.replace("<20261128091240.4F1A2C0021@mx.example.com>", own_id)
    original = "Message-ID: <run7.r28.a1b2c3@msgrun.example.com>\n"
    raw = raw.replace(original, f"Message-ID: {message_id}\n" if message_id else "")
    return raw.encode()


def arf_abuse(message_id: str | None, address: str) -> bytes:
    raw = (SAMPLES / "arf_abuse.eml").read_text()
    raw = raw.replace("joao@isp.example", address)
    original = "Message-ID: <run7.r30.ff66@msgrun.example.com>\n"
    raw = raw.replace(original, f"Message-ID: {message_id}\n" if message_id else "")
    return raw.encode()
