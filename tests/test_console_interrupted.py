"""The console shows an interrupted run as such: the runs list and the run screen say
so, show no rate for it, and offer restart (domain.md, "An interrupted delivery
shows")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from core.clock import FixedClock, SystemClock
from core.delivery import queries, transitions
from core.delivery.starting import create_run
from core.run_info import get_run
from core.storage import Database, open_database
from core.storage.models import MessageRun, table_of
from fixtures.smtp_servers import SmtpServer
from tests.conftest import load_ok
from tests.console_support import NOW, console
from tests.delivery_support import document
from tests.test_console import ThreadLauncher, keys, open_run, settle, wait_for
from tui.console.runs_screen import RunsScreen

pytestmark = pytest.mark.timeout(120)
SIZE = (80, 24)
ELSEWHERE = "mail-7.elsewhere.example"


def lease(database: Database, run_id: int, owner: str, expires: Any) -> None:
    table = table_of(MessageRun)
    with database.connect() as connection:
        connection.execute(
            update(table)
            .where(table.c.id == run_id)
            .values(lease_owner=owner, lease_expires_at=expires)
        )


def part_sent(database: Database, run_id: int, sending: int, sent: int) -> None:
    """``sending`` recipients marked, the first ``sent`` of them sent a few seconds apart."""
    with database.connect() as connection:
        due = queries.load_due(connection, run_id, NOW, sending)
        transitions.mark_sending(connection, run_id, due, NOW)
        transitions.record_results(
            connection,
            run_id,
            "inv",
            [
                transitions.Result(
                    d.id,
                    "sent",
                    smtp_code=250,
                    smtp_reply=f"2.0.0 Ok: queued as M{n:06d}",
                    sent_at=NOW - timedelta(seconds=2 * (sent - n)),
                    customer_id=d.customer_id,
                    address=d.address,
                    document_id=d.document_id,
                )
                for n, d in enumerate(due[:sent])
            ],
            NOW,
        )


def runs_database(folder: Path, port: int = 2525) -> Database:
    """Run 1 delivered now by a process elsewhere (its lease runs); run 2 interrupted:
    its process elsewhere stopped renewing its lease, which has lapsed."""
    database = open_database(f"sqlite:///{folder / 'interrupted.db'}")
    clock = FixedClock(NOW)
    load_ok(database, document(12, port))
    at = NOW
    first = create_run(database, "inv", at, clock, started_by="ops@console", token="c0ffee21")
    part_sent(database, first, 3, 2)
    lease(database, first, f"{ELSEWHERE}:4343:abcd1234", NOW + timedelta(hours=1))
    second = create_run(database, "inv", at, clock, started_by="ops@console", token="c0ffee22")
    part_sent(database, second, 6, 4)
    lease(database, second, f"{ELSEWHERE}:4242:abcd1234", NOW - timedelta(seconds=20))
    return database


@pytest.fixture
def runs_db(tmp_path: Path) -> Database:
    return runs_database(tmp_path)


def test_an_interrupted_run_in_the_runs_list_at_80_by_24(
    snap_compare: Any, runs_db: Database
) -> None:
    assert snap_compare(console(runs_db), terminal_size=SIZE, run_before=keys())


def test_an_interrupted_run_at_80_by_24(snap_compare: Any, runs_db: Database) -> None:
    assert snap_compare(console(runs_db), terminal_size=SIZE, run_before=open_run(2))


def drawn(app: Any) -> set[str]:
    """The keys the footer shows, as drawn."""
    return {key.action for key in app.screen.query("FooterKey")}


async def test_restart_is_offered_for_an_interrupted_run_and_not_for_one_being_delivered(
    runs_db: Database,
) -> None:
    app = console(runs_db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        assert "restart" in drawn(app), "the highlighted run (2) is interrupted"
        line = str(app.screen.query_one("#run-line").render())
        assert "interrupted" in line and "R restarts it" in line
        await pilot.press("j")  # run 1: its process delivers it
        await settle(pilot)
        assert "restart" not in drawn(app)
        await open_run(1)(pilot)
        assert "restart" not in drawn(app) and "stop" in drawn(app)
        await pilot.press("escape")
        await open_run(2)(pilot)
        assert "restart" in drawn(app)
        assert "interrupted" in str(app.screen.query_one("#run-summary").render())
        assert not app.screen.query_one("#rate-line").display, "no rate for it"


async def test_restart_from_the_runs_list_delivers_an_interrupted_run(tmp_path: Path) -> None:
    with SmtpServer() as server:
        database = runs_database(tmp_path, server.port)
        launcher = ThreadLauncher(database)
        app = console(database, launch=launcher)
        app.clock = SystemClock()  # the lapsed lease is long past on this clock too
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, RunsScreen)
            selected = screen.selected()
            assert selected is not None and selected.id == 2 and selected.interrupted
            await pilot.press("R")
            await settle(pilot)
            assert type(app.screen).__name__ == "Confirm"
            await pilot.press("y")
            await settle(pilot)
            await wait_for(pilot, lambda: get_run(database, 2).state == "completed_with_failures")
            launcher.join()
            app.refresh_screen()
            await settle(pilot)
            assert app.screen is screen and "restart" not in drawn(app)
            assert "interrupted" not in str(screen.query_one("#run-line").render())
    run = get_run(database, 2)
    # The two it was sending when its process went are in doubt; the rest are sent.
    assert (run.counts["sent"], run.counts["unknown"], run.counts["pending"]) == (10, 2, 0)
    assert run.lease_owner is None
    assert len(server.messages()) == 6
