"""The console tells the whole answer after sending: the recipient view (`m`) shows every
attempt, how it settled, its reports and where it was handed on; the customer drill-down
lists the deliveries as `why` does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from textual.pilot import Pilot
from textual.widgets import Static

from core.bounces.sources import SourceMessage
from core.bounces.store import ReadSummary, record_message
from core.clock import FixedClock, parse_instant
from core.delivery.starting import create_run
from core.follow_up import start_follow_up
from core.storage import Database, open_database
from core.storage.models import Recipient, table_of
from core.views.export_rows import Selection
from fixtures.smtp_servers import Faults, SmtpServer
from tests.bounce_support import postfix_dsn
from tests.conftest import load_ok
from tests.delivery_support import AT, deliver_now, document
from tui.console.app import MsgrunConsole
from tui.console.customer_screen import CustomerScreen
from tui.console.message_screen import MessageScreen

pytestmark = pytest.mark.timeout(120)
NARROW = (80, 24)
T0 = parse_instant(AT)
GREYLISTED = "450 4.2.0 Greylisted, try again later"


def answered_run(db: Database) -> int:
    """p0 greylisted twice and sent at its third attempt, then bounced (a DSN read on
    2026-11-28) and handed on to a follow-up (run 2); p1 refused for good at once."""
    clock = FixedClock(T0)
    faults = Faults(rcpt={"p0@example.org": [GREYLISTED, GREYLISTED],
                          "p1@example.org": ["550 5.1.1 User unknown"]})  # fmt: skip
    with SmtpServer(faults=faults) as server:
        load_ok(db, document(2, server.port, retry_after_seconds=[600]))
        run_id = create_run(db, "inv", T0, clock, token="snap")
        for minutes in (0, 15, 30):
            clock.set(T0 + timedelta(minutes=minutes))
            deliver_now(db, run_id, clock)
    recipient = table_of(Recipient)
    with db.connect() as connection:
        message_id = connection.execute(
            select(recipient.c.message_id).where(recipient.c.address == "p0@example.org")
        ).scalar_one()
    raw = postfix_dsn(message_id, "p0@example.org")
    reported = parse_instant("2026-11-28T12:00:00+00:00")
    record_message(db, SourceMessage("m0", raw, lambda: None), reported, ReadSummary())
    clock.set(T0 + timedelta(hours=1))
    assert start_follow_up(db, run_id, Selection(), clock.now(), clock) == 2
    return run_id


@pytest.fixture(scope="module")
def answered_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    path: Path = tmp_path_factory.mktemp("answer") / "answer.db"
    database = open_database(f"sqlite:///{path}")
    assert answered_run(database) == 1
    return database


def console(database: Database) -> MsgrunConsole:
    clock = FixedClock(parse_instant("2026-12-01T12:00:00+00:00"))
    return MsgrunConsole(
        database, clock=clock, still=True, poll_seconds=None, launch=lambda *_, **__: None
    )


async def settle(pilot: Pilot[Any]) -> None:
    for _ in range(4):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def on(screen: Callable[[], Any]) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(screen())
        await settle(pilot)

    return run


def test_the_recipient_view_shows_three_attempts_a_bounce_and_the_hand_on_at_80_by_24(
    snap_compare: Any, answered_db: Database
) -> None:
    """Greylisted twice, sent at the third attempt, bounced later, handed on to run 2."""
    view = on(lambda: MessageScreen(1, 0, None))
    assert snap_compare(console(answered_db), terminal_size=NARROW, run_before=view)


async def test_the_recipient_view_says_how_a_failed_one_settled_and_every_attempt(
    answered_db: Database,
) -> None:
    app = console(answered_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await on(lambda: MessageScreen(1, 1, None))(pilot)
        shown = str(app.screen.query_one("#delivery", Static).render())
    assert "settled: 550 5.1.1 at the first attempt" in shown
    assert "1. 2026-11-23 10:00:00  550 5.1.1 User unknown (settled it)" in shown
    assert "handed on to follow-up run 2" in shown


async def test_the_customer_drill_down_lists_the_deliveries_like_why(
    answered_db: Database,
) -> None:
    app = console(answered_db)
    async with app.run_test(size=(120, 60)) as pilot:
        await on(lambda: CustomerScreen("C00000"))(pilot)
        shown = str(app.screen.query_one("#customer-report", Static).render())
    deliveries = shown.split("Deliveries (newest run first):")[1].split("Decisions at")[0]
    assert deliveries.index("run 2 · inv") < deliveries.index("run 1 · inv")
    assert "3. 2026-11-23 10:30:00  250 2.0.0 Ok" in deliveries
    assert "bounced hard 5.1.1 on 2026-11-28 · report 1" in deliveries
    assert "→ handed on to run 2" in deliveries
