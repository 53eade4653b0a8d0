"""The console's routines view: schedule, next fire, last result, why not; run now, disable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from core.clock import FixedClock, parse_instant
from core.storage import Database, open_database
from core.triggers.routines import fire_due, list_routines
from tests.conftest import load_ok, sample
from tests.console_support import NOW, console
from tests.test_console import settle

SIZE = (100, 32)
pytestmark = pytest.mark.timeout(120)


def routines_database(folder: Path) -> Database:
    """The sample organisation after three days without a worker, then one tick at NOW."""
    database = open_database(f"sqlite:///{folder / 'routines.db'}")
    load_ok(database, sample())
    clock = FixedClock(parse_instant("2026-11-20T08:00:00+11:00"))
    fire_due(database, clock)
    clock.set(NOW)
    fire_due(database, clock)
    return database


async def open_routines(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("t")
    await settle(pilot)


def test_routines(snap_compare: Any, tmp_path: Path) -> None:
    database = routines_database(tmp_path)
    assert snap_compare(console(database), terminal_size=SIZE, run_before=open_routines)


def test_a_disabled_routine_and_why(snap_compare: Any, tmp_path: Path) -> None:
    database = routines_database(tmp_path)

    async def run(pilot: Pilot[Any]) -> None:
        await open_routines(pilot)
        await pilot.press("j")
        await settle(pilot)

    assert snap_compare(console(database), terminal_size=SIZE, run_before=run)


async def test_disable_and_run_now_from_the_keyboard(tmp_path: Path) -> None:
    database = routines_database(tmp_path)
    launched: list[int] = []
    app = console(database, launch=lambda url, run_id, **_: launched.append(run_id))
    async with app.run_test(size=SIZE) as pilot:
        await open_routines(pilot)
        await pilot.press("d")  # invoice-email: disable, after a confirmation
        await settle(pilot)
        assert type(app.screen).__name__ == "Confirm"
        await pilot.press("y")
        await settle(pilot)
        views = {v.definition: v for v in list_routines(database, NOW)}
        assert not views["invoice-email"].enabled
        assert [b.code for b in views["invoice-email"].blockers] == ["disabled"]
        await pilot.press("j", "j")  # service-reminder: run it now
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert type(app.screen).__name__ == "RunScreen"
        assert len(launched) == 1
        after = {v.definition: v for v in list_routines(database, NOW)}
        last = after["service-reminder"].last
        assert last is not None and last["run"] == launched[0]
        assert "run now" in (last["detail"] or "")
