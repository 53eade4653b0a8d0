"""The console after sending: outcomes on a run, `e` exports the filter, `F` follows up,
and the pictures (sending rate, a settled run's one bar, the follow-up's reasons)."""

from __future__ import annotations

import asyncio
import csv
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from sqlalchemy import event, select, update
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input, Sparkline, Static

from core.bounces.sources import SourceMessage
from core.bounces.store import ReadSummary, record_message
from core.clock import FixedClock, parse_instant
from core.delivery.starting import create_run
from core.follow_up import start_follow_up
from core.run_info import get_run
from core.storage import Database, open_database
from core.storage.models import MessageRun, Recipient, table_of
from core.views.export_rows import Selection
from core.views.runs import run_window, send_rate, settled_parts
from fixtures.smtp_servers import Faults, SmtpServer
from tests.bounce_support import NOW as REPORTED
from tests.bounce_support import arf_abuse, postfix_dsn
from tests.delivery_support import deliver_now, document, new_run
from tui.console.app import MsgrunConsole
from tui.console.charts import PART_RGB, CountBars, SplitBar, shares
from tui.console.confirm import Confirm
from tui.console.export_dialog import ExportDialog
from tui.console.run_screen import FILTERS, RunScreen
from tui.console.window_table import WindowTable

pytestmark = pytest.mark.timeout(120)
NARROW, WIDE = (80, 24), (140, 36)
CLOCK = FixedClock(parse_instant("2026-12-01T12:00:00+00:00"))
SENT_AT = parse_instant("2026-11-28T08:00:00+00:00")


def settled_run(db: Database) -> int:
    """Six recipients: p1 refused, p2 no such mailbox (failed), p3 bounced later,
    p4 complained, p0 and p5 delivered; sent over a few seconds, times fixed."""
    faults = Faults(
        rcpt={
            "p1@example.org": ["550 5.7.1 relaying denied"],
            "p2@example.org": ["550 5.1.1 no such user"],
        }
    )
    with SmtpServer(faults=faults) as server:
        run_id = new_run(db, document(6, server.port))
        deliver_now(db, run_id)
    recipient = table_of(Recipient)
    with db.connect() as connection:
        rows = connection.execute(
            select(recipient).where(recipient.c.run_id == run_id).order_by(recipient.c.position)
        ).all()
        for i, row in enumerate(rows):  # sent at 0, 0, 1, 3, 3, 3 seconds: a rate to draw
            when = SENT_AT + timedelta(seconds=(0, 0, 1, 3, 3, 3)[i])
            values: dict[str, Any] = {"updated_at": when}
            if row.state == "sent":
                values["sent_at"] = when
            connection.execute(update(recipient).where(recipient.c.id == row.id).values(**values))
        connection.execute(
            update(table_of(MessageRun))
            .where(table_of(MessageRun).c.id == run_id)
            .values(started_by="ops@console")
        )
        by_address = {r.address: r for r in rows}
    summary = ReadSummary()
    for i, raw in enumerate(
        (
            postfix_dsn(by_address["p3@example.org"].message_id, "p3@example.org"),
            arf_abuse(by_address["p4@example.org"].message_id, "p4@example.org"),
        )
    ):
        record_message(db, SourceMessage(f"m{i}", raw, lambda: None), REPORTED, summary)
    return run_id


@pytest.fixture(scope="module")
def after_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    database = open_database(f"sqlite:///{tmp_path_factory.mktemp('after') / 'after.db'}")
    assert settled_run(database) == 1
    return database


@pytest.fixture
def own_db(tmp_path: Path) -> Database:
    database = open_database(f"sqlite:///{tmp_path / 'own.db'}")
    settled_run(database)
    return database


def console(database: Database, **options: Any) -> MsgrunConsole:
    options.setdefault("poll_seconds", None)
    options.setdefault("launch", lambda url, run_id, **_: None)
    return MsgrunConsole(database, clock=CLOCK, still=True, **options)


async def settle(pilot: Pilot[Any]) -> None:
    for _ in range(4):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def on_run(run_id: int, *pressed: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(RunScreen(run_id))
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


# -- read models, on SQLite and PostgreSQL -------------------------------------------


def test_the_rate_outcomes_and_parts_of_a_settled_run(db: Database) -> None:
    run_id = settled_run(db)
    rate = send_rate(db, run_id)
    # p0 at 0 s, p3 at 3 s, p4 and p5 at 3 s (p1, p2 failed: not sent).
    assert rate.per_second == [1.0, 0.0, 0.0, 3.0] and rate.bucket_seconds == 1
    assert rate.last == SENT_AT + timedelta(seconds=3)
    # Squeezed into two buckets: two seconds each, per second.
    assert send_rate(db, run_id, buckets=2).per_second == [0.5, 1.5]
    window = run_window(db, run_id)
    assert window.outcome_counts == {"bounce_hard": 1, "bounce_soft": 0, "complaint": 1, "delay": 0}
    assert sorted(window.outcomes.items()) == [(3, "bounce_hard"), (4, "complaint")]
    assert settled_parts(window.progress.run, window.outcome_counts) == {
        "delivered": 2,
        "bounced": 1,
        "complained": 1,
        "failed": 2,
        "unknown": 0,
        "not sent": 0,
        "excluded": 0,
    }
    bounced = run_window(db, run_id, outcome="bounce")
    assert [v.address for v in bounced.rows] == ["p3@example.org"] and bounced.matching == 1
    assert run_window(db, run_id, outcome="complaint", search="p3").matching == 0
    new_id = start_follow_up(db, run_id, Selection(), CLOCK.now(), CLOCK)
    marked = run_window(db, run_id)
    assert marked.handed_on == {1: new_id, 2: new_id, 3: new_id}


def test_a_run_never_sent_has_no_rate(db: Database) -> None:
    run_id = new_run(db, document(2, 2525))
    rate = send_rate(db, run_id)
    assert rate.per_second == [] and rate.peak == 0.0
    assert settled_parts(get_run(db, run_id), {}) is None  # not settled


def test_a_bar_is_split_in_proportion_and_every_part_shows() -> None:
    assert shares({"delivered": 98, "bounced": 1, "failed": 0, "excluded": 1}, 20) == {
        "delivered": 18,
        "bounced": 1,
        "failed": 0,
        "excluded": 1,
    }
    assert sum(shares({"a": 3, "b": 3, "c": 3}, 10).values()) == 10


class ChartApp(App[None]):
    """One split bar 20 cells wide over bars by count 30 cells wide."""

    CSS = "SplitBar { width: 20; } CountBars { width: 30; }"

    def compose(self) -> ComposeResult:
        yield SplitBar(id="split")
        yield CountBars(id="bars")


def drawn(widget: Any) -> list[Text]:
    text = widget.render()
    assert isinstance(text, Text)
    return text.split("\n", allow_blank=False)


async def test_the_split_bar_is_a_plot_with_each_part_in_its_colour() -> None:
    app = ChartApp()
    async with app.run_test(size=(40, 10)) as pilot:
        split = app.query_one(SplitBar)
        split.show_parts({"delivered": 98, "bounced": 1, "failed": 0, "excluded": 1})
        await pilot.pause()
        (row,) = drawn(split)
        assert row.plain == "█" * 20
        colours = [
            (span.end - span.start, span.style.color.triplet)  # type: ignore[union-attr]
            for span in row.spans
            if span.style and span.style.color  # type: ignore[union-attr]
        ]
        assert [(n, (t.red, t.green, t.blue)) for n, t in colours if t] == [
            (18, PART_RGB["delivered"]),
            (1, PART_RGB["bounced"]),
            (1, PART_RGB["excluded"]),
        ]


async def test_bars_by_count_give_each_name_a_row_longest_first_and_none_vanishes() -> None:
    app = ChartApp()
    async with app.run_test(size=(40, 10)) as pilot:
        bars = app.query_one(CountBars)
        bars.show_counts({"no_address": 1, "suppressed": 4, "unsubscribed": 1000})
        await pilot.pause()
        assert bars.size.height == 3
        rows = [row.plain for row in drawn(bars)]
        assert [row.split("█")[0].rstrip() for row in rows] == [
            "unsubscribed 1,000",
            "suppressed       4",
            "no_address       1",
        ]
        lengths = [row.count("█") for row in rows]
        assert lengths[0] == 30 - len("unsubscribed 1,000 ")
        assert lengths[1] == lengths[2] == 1  # 4 and 1 beside 1,000 still show


# -- pictures ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "wide"])
def test_a_settled_run_with_its_outcomes_and_pictures(
    snap_compare: Any, after_db: Database, size: tuple[int, int]
) -> None:
    assert snap_compare(console(after_db), terminal_size=size, run_before=on_run(1))


@pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "wide"])
def test_the_export_dialog(snap_compare: Any, after_db: Database, size: tuple[int, int]) -> None:
    failed = FILTERS.index("failed")
    pressed = ["f"] * failed + ["e"]
    assert snap_compare(console(after_db), terminal_size=size, run_before=on_run(1, *pressed))


def test_the_export_dialog_asks_before_replacing_a_file(
    snap_compare: Any, after_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run-1-failed.csv").write_text("x" * 12_345)
    pressed = ["f"] * FILTERS.index("failed") + ["e", "enter"]
    assert snap_compare(console(after_db), terminal_size=NARROW, run_before=on_run(1, *pressed))


@pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "wide"])
def test_the_follow_up_confirmation(
    snap_compare: Any, after_db: Database, size: tuple[int, int]
) -> None:
    assert snap_compare(console(after_db), terminal_size=size, run_before=on_run(1, "F"))


def test_the_runs_list_shows_what_a_follow_up_follows(snap_compare: Any, tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'runs.db'}")
    run_id = settled_run(database)
    start_follow_up(database, run_id, Selection(), CLOCK.now(), CLOCK, started_by="ops@console")

    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)

    assert snap_compare(console(database), terminal_size=NARROW, run_before=run)


# -- keys ----------------------------------------------------------------------------


async def test_e_writes_the_filters_rows_to_a_file(
    after_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = console(after_db)
    async with app.run_test(size=NARROW) as pilot:
        await on_run(1, *["f"] * FILTERS.index("failed"), "e")(pilot)
        assert isinstance(app.screen, ExportDialog)
        field = app.screen.query_one("#export-path", Input)
        assert field.value == "run-1-failed.csv"
        # A folder that does not exist: said in the dialog, nothing written.
        field.value = str(tmp_path / "missing" / "x.csv")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExportDialog)
        error = str(app.screen.query_one("#export-error", Static).render())
        assert "does not exist" in error and "missing" in error
        # A file named .json: the console writes CSV, so it is refused, nothing written.
        field.value = "run-1-failed.json"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExportDialog)
        error = str(app.screen.query_one("#export-error", Static).render())
        assert "names a JSON file; the console writes CSV" in error
        assert not (tmp_path / "run-1-failed.json").exists()
        field.value = "run-1-failed.csv"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunScreen)
        # An outcome filter: the bounced one.
        await pilot.press(*["f"] * (FILTERS.index("bounce") - FILTERS.index("failed")), "e")
        await settle(pilot)
        assert app.screen.query_one("#export-path", Input).value == "run-1-bounce.csv"
        await pilot.press("enter")
        await settle(pilot)
    with open(tmp_path / "run-1-failed.csv", newline="", encoding="utf-8") as f:
        failed = list(csv.DictReader(f))
    assert [(r["address"], r["state"], r["smtp_code"]) for r in failed] == [
        ("p1@example.org", "failed", "550"),
        ("p2@example.org", "failed", "550"),
    ]
    with open(tmp_path / "run-1-bounce.csv", newline="", encoding="utf-8") as f:
        bounced = list(csv.DictReader(f))
    assert [(r["address"], r["state"], r["outcome"]) for r in bounced] == [
        ("p3@example.org", "sent", "bounce_hard")
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1-bounce.csv", "run-1-failed.csv"]


async def test_e_replaces_a_file_only_once_confirmed(
    after_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    existing = tmp_path / "run-1-failed.csv"
    existing.write_text("300 rows of last week\n")
    app = console(after_db)
    async with app.run_test(size=NARROW) as pilot:
        await on_run(1, *["f"] * FILTERS.index("failed"), "e", "enter")(pilot)
        assert isinstance(app.screen, Confirm)
        question = str(app.screen.query_one("#confirm-question", Static).render())
        assert question == "Replace run-1-failed.csv?"
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, ExportDialog)
        error = str(app.screen.query_one("#export-error", Static).render())
        assert "run-1-failed.csv exists and was not replaced" in error
        assert existing.read_text() == "300 rows of last week\n"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, RunScreen)
    with open(existing, newline="", encoding="utf-8") as f:
        assert [r["address"] for r in csv.DictReader(f)] == ["p1@example.org", "p2@example.org"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1-failed.csv"]


async def test_f_confirmed_creates_a_follow_up_of_those_not_reached_and_launches_it(
    own_db: Database,
) -> None:
    on_ui: list[str] = []

    def check(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            on_ui.append(statement.split("\n")[0][:80])

    event.listen(own_db.engine, "before_cursor_execute", check)
    launched: list[int] = []
    app = console(own_db, launch=lambda url, run_id, **_: launched.append(run_id))
    async with app.run_test(size=NARROW) as pilot:
        await on_run(1, "F")(pilot)
        assert isinstance(app.screen, Confirm)
        detail = str(app.screen.query_one("#confirm-detail", Static).render())
        assert "3 recipients did not get it" in detail
        assert "1 to send" in detail and "2 excluded" in detail
        assert app.screen.query_one("#confirm-bars", CountBars).counts == [("suppressed", 2)]
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == 2
        assert app.screen.query_one("#rate-line", Sparkline).data == [0.0]
        await pilot.press("escape")  # back on run 1: who was handed on, and to which run
        await settle(pilot)
        table = app.screen.query_one("#recipients", WindowTable)
        replies = [str(table.get_row_at(i)[-1]) for i in range(table.row_count)]
        # At 80 columns the mark keeps the run it went to: "→ run 2".
        assert ["→ run 2" in r for r in replies] == [
            False,
            True,
            True,
            True,
            False,
            False,
        ]
    event.remove(own_db.engine, "before_cursor_execute", check)
    assert on_ui == []
    assert launched == [2]
    follow_up = get_run(own_db, 2)
    assert follow_up.follow_up_of == 1
    recipient = table_of(Recipient)
    with own_db.connect() as connection:
        planned = {
            r.address: r.state
            for r in connection.execute(select(recipient).where(recipient.c.run_id == 2))
        }
        handed = {
            r.address
            for r in connection.execute(
                select(recipient).where(recipient.c.run_id == 1, recipient.c.handed_on_to == 2)
            )
        }
    # The failed ones and the bounced one; the suppressed ones come out excluded.
    assert planned == {
        "p1@example.org": "pending",
        "p2@example.org": "excluded",
        "p3@example.org": "excluded",
    }
    assert handed == set(planned)


async def test_f_cancelled_creates_nothing(own_db: Database) -> None:
    launched: list[int] = []
    app = console(own_db, launch=lambda url, run_id, **_: launched.append(run_id))
    async with app.run_test(size=NARROW) as pilot:
        await on_run(1, "F", "n")(pilot)
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == 1
    assert launched == []
    with own_db.connect() as connection:
        runs = connection.execute(select(table_of(MessageRun).c.id)).all()
        handed = connection.execute(
            select(table_of(Recipient).c.id).where(table_of(Recipient).c.handed_on_to.is_not(None))
        ).all()
    assert [r.id for r in runs] == [1] and handed == []


async def test_a_settled_runs_rate_is_read_once_not_for_every_key(
    after_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rate scans the run's sent recipients: keys that move the window never pay it."""
    import tui.console.run_screen as run_screen

    reads: list[int] = []

    def counted(database: Database, run_id: int) -> Any:
        reads.append(run_id)
        return send_rate(database, run_id)

    monkeypatch.setattr(run_screen, "send_rate", counted)
    app = console(after_db)
    async with app.run_test(size=NARROW) as pilot:
        await on_run(1, "f", "f", "G", "g", "ctrl+r")(pilot)
        line = app.screen.query_one("#rate-line", Sparkline)
        assert list(line.data or []) == [1.0, 0.0, 0.0, 3.0]
    assert reads == [1]


async def test_a_run_that_ends_soon_after_it_is_opened_shows_its_rate(own_db: Database) -> None:
    """Opened while nothing was sent yet, it ends within the seconds before the next
    read of the rate: the rate is read again once it is seen ended."""
    with SmtpServer() as server:
        run_id = new_run(own_db, document(3, server.port))
        app = console(own_db)
        async with app.run_test(size=NARROW) as pilot:
            await on_run(run_id)(pilot)
            line = app.screen.query_one("#rate-line", Sparkline)
            assert not line.display  # nothing sent yet
            await asyncio.to_thread(deliver_now, own_db, run_id)
            await pilot.press("ctrl+r")
            await settle(pilot)
            assert line.display and sum(line.data or []) == 3.0


@pytest.fixture
def reached_db(tmp_path: Path) -> tuple[Database, int, int]:
    """A run that reached everyone, and one still running."""
    database = open_database(f"sqlite:///{tmp_path / 'all.db'}")
    with SmtpServer() as server:
        reached = new_run(database, document(2, server.port))
        deliver_now(database, reached)
    running = create_run(database, "inv", parse_instant("2026-11-23T11:00:00+00:00"), CLOCK)
    return database, reached, running


async def test_f_on_a_run_that_reached_everyone_or_still_runs_asks_nothing(
    reached_db: tuple[Database, int, int],
) -> None:
    database, reached, running = reached_db
    app = console(database)

    def toasts() -> list[str]:
        return [str(t.render()) for t in app.screen.query("Toast")]

    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await on_run(reached, "F")(pilot)
        assert isinstance(app.screen, RunScreen)
        assert any("nothing to follow up" in t for t in toasts()), toasts()
        await pilot.press("escape")
        await on_run(running, "F")(pilot)
        assert isinstance(app.screen, RunScreen)
        assert any("once it has ended" in t for t in toasts()), toasts()
    with database.connect() as connection:
        assert len(connection.execute(select(table_of(MessageRun).c.id)).all()) == 2
