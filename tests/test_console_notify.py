"""On PostgreSQL the console hears of runs changed by other processes (LISTEN/NOTIFY):
a run started, stopped or ended elsewhere shows at once, without waiting for a poll.

The console here does not poll at all (``poll_seconds=None``), so only a notice can
make it show the change. How soon is measured by ``scripts/bench console``.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from textual.pilot import Pilot

from core.clock import SystemClock, parse_instant
from core.delivery.starting import create_run, request_stop
from core.storage import Database
from core.storage.notices import RunChanges
from tests.conftest import load_ok
from tests.console_support import console
from tests.delivery_support import AT, document
from tui.console.runs_screen import RunsScreen

pytestmark = [pytest.mark.postgresql, pytest.mark.timeout(60)]


async def until(pilot: Pilot[None], check: object, what: str) -> None:
    deadline = time.monotonic() + 15
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await pilot.pause(0.02)


async def test_runs_started_and_stopped_elsewhere_show_without_a_poll(
    postgresql_db: Database,
) -> None:
    load_ok(postgresql_db, document(3, 2525))
    app = console(postgresql_db)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        assert app.run_changes is not None
        await asyncio.to_thread(app.run_changes.listening.wait, 10)
        await until(pilot, lambda: screen.items == [] and screen.is_mounted, "first paint")

        # Another process (a thread here, on a connection of its own) starts a run…
        made: list[int] = []
        thread = threading.Thread(
            target=lambda: made.append(
                create_run(postgresql_db, "inv", parse_instant(AT), SystemClock())
            )
        )
        thread.start()
        thread.join()
        await until(
            pilot,
            lambda: [r.run.id for r in screen.items] == made,
            "the new run was not shown",
        )
        # … and stops it.
        await asyncio.to_thread(request_stop, postgresql_db, made[0], SystemClock(), "ops@x")
        await until(
            pilot,
            lambda: screen.items and screen.items[0].run.state in ("stopping", "stopped"),
            "the stop was not shown",
        )


def test_only_postgresql_is_listened_to(sqlite_db: Database) -> None:
    assert not RunChanges.possible(sqlite_db)
