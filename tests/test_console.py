"""The console: a snapshot of every screen in the states an operator meets, and keyboard flows."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from core.clock import SystemClock
from core.delivery.deliver import deliver
from core.run_info import get_run
from core.storage import Database, open_database
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import load_ok
from tests.console_support import console, sample_database
from tests.delivery_support import document
from tui.console.customer_screen import CustomerScreen
from tui.console.plan_screen import PlanScreen
from tui.console.run_screen import RunScreen

SIZE = (100, 32)
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    return sample_database(tmp_path_factory.mktemp("console"))


async def settle(pilot: Pilot[Any]) -> None:
    """Let every load finish and paint: screenshots wait for the workers."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def keys(*pressed: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


def test_runs_on_an_empty_database(snap_compare: Any, tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    assert snap_compare(console(database), terminal_size=SIZE, run_before=keys())


def test_runs(snap_compare: Any, sample_db: Database) -> None:
    assert snap_compare(console(sample_db), terminal_size=SIZE, run_before=keys())


def open_run(run_id: int, *pressed: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(RunScreen(run_id))
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


def test_a_run_with_failures_and_held_recipients(snap_compare: Any, sample_db: Database) -> None:
    assert snap_compare(console(sample_db), terminal_size=SIZE, run_before=open_run(1))


def test_a_stopped_run_with_pending_and_a_numbered_draft(
    snap_compare: Any, sample_db: Database
) -> None:
    assert snap_compare(console(sample_db), terminal_size=SIZE, run_before=open_run(2))


def test_a_run_with_unknown_recipients(snap_compare: Any, sample_db: Database) -> None:
    assert snap_compare(
        console(sample_db),
        terminal_size=SIZE,
        run_before=open_run(3, "f", "f", "f", "f", "f", "f", "f"),
    )


def test_a_running_run(snap_compare: Any, sample_db: Database) -> None:
    assert snap_compare(console(sample_db), terminal_size=SIZE, run_before=open_run(4))


def test_the_stop_confirmation(snap_compare: Any, sample_db: Database) -> None:
    assert snap_compare(console(sample_db), terminal_size=SIZE, run_before=open_run(3, "x"))


def plan_of(definition: str, *pressed: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        from core.clock import parse_instant
        from tests.conftest import STORY_AT

        await settle(pilot)
        await pilot.app.push_screen(PlanScreen(definition, parse_instant(STORY_AT)))
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


def test_a_plan_preview(snap_compare: Any, sample_db: Database) -> None:
    assert snap_compare(console(sample_db), terminal_size=SIZE, run_before=plan_of("invoice-email"))


def test_a_candidate_excluded_for_several_reasons(snap_compare: Any, sample_db: Database) -> None:
    pressed = ["j"] * 15 + ["enter"]  # C015: a suppressed draft of an inactive service
    assert snap_compare(
        console(sample_db), terminal_size=SIZE, run_before=plan_of("invoice-email", *pressed)
    )


def test_a_customer_drill_down(snap_compare: Any, sample_db: Database) -> None:
    async def run(pilot: Pilot[Any]) -> None:
        from core.clock import parse_instant
        from tests.conftest import STORY_AT

        await settle(pilot)
        await pilot.app.push_screen(
            CustomerScreen("C003", definition="invoice-email", at=parse_instant(STORY_AT))
        )
        await settle(pilot)

    assert snap_compare(console(sample_db), terminal_size=SIZE, run_before=run)


def test_help(snap_compare: Any, sample_db: Database) -> None:
    assert snap_compare(
        console(sample_db), terminal_size=SIZE, run_before=open_run(1, "question_mark")
    )


# -- keyboard flows ----------------------------------------------------------------


class ThreadLauncher:
    """Deliver as `msgrun run restart` would, in a thread of the test process."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.threads: list[threading.Thread] = []

    def __call__(self, db_url: str, run_id: int, *, resend_unknown: bool = False) -> None:
        def work() -> None:
            asyncio.run(
                deliver(
                    self.database, run_id, SystemClock(), environ={}, resend_unknown=resend_unknown
                )
            )

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(30)


async def wait_for(pilot: Pilot[Any], check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


async def test_start_stop_restart_complete(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'flow.db'}")
    with SmtpServer(faults=Faults(data_delay=0.05)) as server:
        load_ok(database, document(120, server.port, max_connections=1))
        launcher = ThreadLauncher(database)
        app = console(database, poll_seconds=0.1, launch=launcher)
        app.clock = SystemClock()
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("n")  # definitions
            await settle(pilot)
            await pilot.press("enter")  # the plan of `inv`
            await settle(pilot)
            assert isinstance(app.screen, PlanScreen)
            await pilot.press("s", "y")  # start it, confirmed
            await settle(pilot)
            assert isinstance(app.screen, RunScreen)
            run_id = app.screen.run_id
            await wait_for(pilot, lambda: len(server.messages()) >= 5)
            await pilot.press("x", "y")  # stop, confirmed
            await wait_for(pilot, lambda: get_run(database, run_id).state == "stopped")
            launcher.join()
            stopped = get_run(database, run_id)
            assert stopped.counts["pending"] > 0 and stopped.counts["sending"] == 0
            await pilot.press("R", "y")  # restart, confirmed
            await wait_for(pilot, lambda: get_run(database, run_id).state == "completed")
            launcher.join()
            # The screen follows the database within a poll or two.
            summary = app.screen.query_one("#run-summary")
            await wait_for(pilot, lambda: "completed" in str(summary.render()), seconds=2)
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(120)}


async def test_from_a_failed_recipient_to_its_customers_reasons(sample_db: Database) -> None:
    app = console(sample_db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.push_screen(RunScreen(1))
        await settle(pilot)
        # Filter to failed recipients: all, pending, held, sending, sent, retrying, failed.
        for _ in range(6):
            await pilot.press("f")
            await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        assert [r.state for r in screen.rows] == ["failed"]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CustomerScreen)
        text = str(app.screen.query_one("#customer-report").render())
        assert "quinn@taylorfitness.example.com" in text
        assert "SUPPRESSED: hard_bounce" in text
        assert "suppressed:" in text and "fix:" in text


def test_a_message_as_msgrun_builds_it(snap_compare: Any, sample_db: Database) -> None:
    async def run(pilot: Pilot[Any]) -> None:
        from tui.console.message_screen import MessageScreen

        await settle(pilot)
        await pilot.app.push_screen(RunScreen(1))
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, RunScreen)
        first = screen.rows[0]
        await pilot.app.push_screen(MessageScreen(1, first.position, first.message_id))
        await settle(pilot)

    assert snap_compare(console(sample_db), terminal_size=SIZE, run_before=run)


async def test_the_command_palette_offers_the_screens_actions(sample_db: Database) -> None:
    from tui.console.confirm import Confirm

    app = console(sample_db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.push_screen(RunScreen(2))
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        for key in "Re-send unknown":
            await pilot.press("space" if key == " " else key)
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        # Run 2 has no unknown recipient: the action says so instead of asking.
        assert not isinstance(app.screen, Confirm)
        await pilot.press("ctrl+p")
        for key in "Restart":
            await pilot.press(key)
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, Confirm)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, RunScreen)


def test_the_demo_sets_everything_up_and_delivers(tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("msgrun"))
    result = subprocess.run(
        [exe, "demo", "--no-console", "--rate", "500", "--folder", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    assert "demo: run 1 of service-reminder started" in result.stderr
    database = open_database(f"sqlite:///{tmp_path / 'demo' / 'demo.db'}")
    run = get_run(database, 1)
    assert run.state in ("completed", "completed_with_failures")
    assert run.counts["sent"] > 50
    received = list((tmp_path / "demo" / "mail").glob("*.eml"))
    assert len(received) == run.counts["sent"]


def test_runs_at_80_by_24(snap_compare: Any, sample_db: Database) -> None:
    assert snap_compare(console(sample_db), terminal_size=(80, 24), run_before=keys())


def test_a_run_at_80_by_24(snap_compare: Any, sample_db: Database) -> None:
    assert snap_compare(console(sample_db), terminal_size=(80, 24), run_before=open_run(1))


@pytest.mark.parametrize("term", ["xterm-256color", "screen"])
def test_the_console_leaves_cleanly_when_the_terminal_goes_away(tmp_path: Path, term: str) -> None:
    """In a real pseudo-terminal: the console starts, then SIGHUP (the SSH session dropped)."""
    import fcntl
    import os
    import signal
    import struct
    import subprocess
    import sys
    import termios

    exe = str(Path(sys.executable).with_name("msgrun"))
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": term, "MSGRUN_DB": f"sqlite:///{tmp_path / 'tty.db'}"}
    open_database(env["MSGRUN_DB"]).dispose()  # an empty database: the console creates none
    process = subprocess.Popen(
        [exe], stdin=secondary, stdout=secondary, stderr=secondary, env=env, start_new_session=True
    )
    os.close(secondary)
    import re
    import select

    screen = ""
    deadline = time.monotonic() + 30
    while "No runs yet" not in screen and time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.2)  # never block past the deadline
        if not ready:
            continue
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        # The screen as text: escape sequences (colours, cursor moves) removed.
        screen += re.sub(
            r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])", "", chunk.decode(errors="replace")
        )
    assert "No runs yet" in screen, "the console did not draw its first screen"
    process.send_signal(signal.SIGHUP)
    try:
        code = process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    assert code == 0


def test_a_customer_drill_down_shows_unsubscribes_beside_suppressions(
    snap_compare: Any, sample_db: Database
) -> None:
    from sqlalchemy import select

    from core.clock import parse_instant
    from core.storage.models import Address, Unsubscribe, table_of
    from tests.conftest import STORY_AT

    address = table_of(Address)
    with sample_db.connect() as connection:
        row = connection.execute(
            select(address.c.contact_id, address.c.address)
            .where(address.c.customer_id == "C003")
            .order_by(address.c.contact_id, address.c.position)
            .limit(1)
        ).one()
        connection.execute(
            table_of(Unsubscribe)
            .insert()
            .values(
                address=row.address,
                address_lower=row.address.lower(),
                customer_id="C003",
                contact_id=row.contact_id,
                preference="exclude_from_broadcasts",
                kind="broadcast",
                at=parse_instant("2026-12-05T14:02:00+00:00"),
                how="one_click",
                run_id=7,
                position=3,
            )
        )

    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(
            CustomerScreen("C003", definition="heater-offer", at=parse_instant(STORY_AT))
        )
        await settle(pilot)

    assert snap_compare(console(sample_db), terminal_size=SIZE, run_before=run)


def test_a_waiting_run_says_whether_a_worker_will_send_it(sample_db: Database) -> None:
    """Run 1 waits for its held recipient's quiet hours to end: with no msgrun worker
    alive nothing will send it then, and the run screen says so; with one, it names it."""
    import os
    import socket

    from core.delivery import registry
    from core.delivery.holding import Holder
    from core.views.runs import run_window
    from tui.console.run_screen import waiting_words

    progress = run_window(sample_db, 1).progress
    assert progress.state == "waiting" and progress.waiting is not None
    assert progress.waiting.workers == ()
    assert waiting_words(progress) == (
        "waiting until 2026-11-23 09:00 UTC (1 to send): no msgrun worker is running"
    )
    worker_id = registry.new_worker_id("worker")
    with sample_db.connect() as connection:
        registry.register(connection, worker_id, 60)
    try:
        progress = run_window(sample_db, 1).progress
        assert progress.waiting is not None
        here = Holder(socket.gethostname(), os.getpid(), True)
        assert progress.waiting.workers == (here,)
        assert waiting_words(progress) == (
            f"waiting until 2026-11-23 09:00 UTC (1 to send): msgrun worker "
            f"(pid {os.getpid()} on {socket.gethostname()}) sends them"
        )
    finally:
        with sample_db.connect() as connection:
            registry.retire(connection, worker_id)
    assert run_window(sample_db, 2).progress.waiting is None  # stopped: not waiting
