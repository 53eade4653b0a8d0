"""The console at 80×24 over SSH: what an operator decides by is on screen, keys do what they say.

Pictures at 80×24 (and the wide size where the layout differs), and keyboard
flows; every load finishes before a picture is taken.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from core.clock import parse_instant
from core.smtp_check import load_profile
from core.storage import Database, open_database
from core.triggers.routines import list_routines
from tests.conftest import STORY_AT, load_ok
from tests.console_support import NOW, console, sample_database
from tests.delivery_support import document, new_run
from tests.test_console import settle
from tui.console.customer_screen import CustomerScreen
from tui.console.message_screen import MessageScreen
from tui.console.plan_screen import PlanScreen
from tui.console.run_screen import RunScreen
from tui.console.window_table import WindowTable

NARROW = (80, 24)
WIDE = (160, 32)
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    return sample_database(tmp_path_factory.mktemp("narrow"))


def on(
    screen: Callable[[], Any], *pressed: str, typed: str = ""
) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(screen())
        await settle(pilot)
        for key in typed:
            await pilot.press("space" if key == " " else key)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


def recipients(app: Any) -> WindowTable:
    return app.screen.query_one("#recipients", WindowTable)  # type: ignore[no-any-return]


# -- pictures --------------------------------------------------------------------------


def test_a_plan_preview_at_80_by_24(snap_compare: Any, sample_db: Database) -> None:
    """The whole decision word (`deferred until 09:00`); the document gives way."""
    plan = on(lambda: PlanScreen("invoice-email", parse_instant(STORY_AT)), *["j"] * 13)
    assert snap_compare(console(sample_db), terminal_size=NARROW, run_before=plan)


def test_a_run_on_a_wide_terminal_shows_every_column(
    snap_compare: Any, sample_db: Database
) -> None:
    assert snap_compare(console(sample_db), terminal_size=WIDE, run_before=on(lambda: RunScreen(1)))


def test_a_failed_recipient_in_full_at_80_by_24(snap_compare: Any, sample_db: Database) -> None:
    """`m` on the failed recipient: the server's whole reply, attempts and times."""
    keys = ["f"] * 6 + ["m"]  # all, pending, held, sending, sent, retrying, failed
    assert snap_compare(
        console(sample_db), terminal_size=NARROW, run_before=on(lambda: RunScreen(1), *keys)
    )


def test_an_excluded_recipient_in_full_says_why_it_was_excluded(
    snap_compare: Any, sample_db: Database
) -> None:
    """`m` on `eve.thompson@@example.org`: excluded as an invalid address, not "no address"."""
    keys = ["j"] * 4 + ["m"]
    assert snap_compare(
        console(sample_db), terminal_size=NARROW, run_before=on(lambda: RunScreen(1), *keys)
    )


def test_a_filter_that_matches_nothing_says_so(snap_compare: Any, sample_db: Database) -> None:
    keys = ["f"] * 5  # retrying: none in run 1
    assert snap_compare(
        console(sample_db), terminal_size=NARROW, run_before=on(lambda: RunScreen(1), *keys)
    )


def test_customer_search_lists_the_matches_to_pick_from(
    snap_compare: Any, sample_db: Database
) -> None:
    search = on(CustomerScreen, "enter", "j", "j", typed="example.org")
    assert snap_compare(console(sample_db), terminal_size=NARROW, run_before=search)


def test_a_notice_waits_behind_a_confirmation(snap_compare: Any, sample_db: Database) -> None:
    """Run 3 has ended: `x` says so in a notice; `R` then asks, and no notice is drawn over it,
    neither the one before nor one raised while it asks."""

    async def run(pilot: Pilot[Any]) -> None:
        await on(lambda: RunScreen(3), "x", "R")(pilot)
        pilot.app.notify("a notice raised while the question is asked")
        await settle(pilot)

    assert snap_compare(console(sample_db), terminal_size=NARROW, run_before=run)


# -- keys and words ----------------------------------------------------------------------


async def test_g_and_G_land_on_the_first_and_last_recipient(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'big.db'}")
    run_id = new_run(database, document(260, 2525))
    app = console(database)
    async with app.run_test(size=NARROW) as pilot:
        await on(lambda: RunScreen(run_id))(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await pilot.press("G")
        await settle(pilot)
        # The last window is read from the database: the cursor is on recipient 260.
        table = recipients(app)
        assert screen.rows[table.cursor_row].position == 259
        first = 260 - screen.page + 1  # a screenful: as many as the table shows
        assert f"{first}-260 of 260" in str(screen.query_one("#window", Static).render())
        await pilot.press("g")
        await settle(pilot)
        assert screen.window_start == 0 and screen.rows[table.cursor_row].position == 0
        # In a small search result, g goes back to its first row, so m opens that one.
        await pilot.press("slash", *"p25", "enter")
        await settle(pilot)
        assert [r.position for r in screen.rows] == [25, *range(250, 260)]
        await pilot.press("j", "j", "j", "g")
        await settle(pilot)
        assert table.cursor_row == 0
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, MessageScreen) and app.screen.position == 25


async def test_a_window_read_taller_than_the_table_is_read_again_at_its_height(
    tmp_path: Path,
) -> None:
    """A window read before the table had its height (a load that finished before the
    layout) holds more rows than fit: it is read again, and the count says what is shown
    — at the top, and for the last window, which keeps the last recipient."""
    database = open_database(f"sqlite:///{tmp_path / 'tall.db'}")
    run_id = new_run(database, document(60, 2525))
    app = console(database)
    async with app.run_test(size=NARROW) as pilot:
        await on(lambda: RunScreen(run_id))(pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        fits = screen.page
        assert fits == recipients(app).size.height - 1
        window = screen.query_one("#window", Static)
        for last in (False, True):
            screen.page, screen.want_last = 40, last  # a guess taller than the table
            screen.console.refresh_screen()
            await settle(pilot)
            assert screen.page == fits and len(screen.rows) == fits
            shown = f"{60 - fits + 1}-60" if last else f"1-{fits}"
            assert f"{shown} of 60" in str(window.render())


async def test_g_and_G_land_on_the_first_and_last_row_of_every_list(sample_db: Database) -> None:
    """The runs, the SMTP profiles and the routines move as a run's recipients do."""
    from textual.widgets import DataTable

    from tui.console.profiles_screen import ProfilesScreen
    from tui.console.routines_screen import RoutinesScreen

    app = console(sample_db)
    async with app.run_test(size=NARROW) as pilot:
        await settle(pilot)
        tables = {"#runs": 0}
        for make, selector in (
            (None, "#runs"),
            (ProfilesScreen, "#profiles"),
            (RoutinesScreen, "#routines"),
        ):
            if make is not None:
                await on(make)(pilot)
            table = app.screen.query_one(selector, DataTable)
            tables[selector] = table.row_count
            await pilot.press("G")
            await settle(pilot)
            assert table.cursor_row == table.row_count - 1
            await pilot.press("g")
            await settle(pilot)
            assert table.cursor_row == 0
        assert tables["#runs"] >= 3, tables  # several runs: the moves were seen to move


async def test_a_customer_is_picked_from_the_matches_with_the_keyboard(
    sample_db: Database,
) -> None:
    app = console(sample_db)
    async with app.run_test(size=NARROW) as pilot:
        await on(CustomerScreen, typed="a")(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        found = str(screen.query_one("#customer-found", Static).render())
        assert found == "18 customers match 'a'"
        await pilot.press("down", "enter")  # the second: C002
        await settle(pilot)
        report = str(screen.query_one("#customer-report", Static).render())
        assert report.startswith("Customer C002")
        await pilot.press("slash")
        await pilot.press("ctrl+u", *"c015", "enter")  # one match: straight to it
        await settle(pilot)
        report = str(screen.query_one("#customer-report", Static).render())
        assert report.startswith("Customer C015 Olivia Brown")
        await pilot.press("slash")
        await pilot.press("ctrl+u", *"C99", "enter")
        await settle(pilot)
        found = str(screen.query_one("#customer-found", Static).render())
        assert found == "No customer matches 'C99'; nearest ids: C009"


async def test_counts_in_words_are_singular_for_one(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'one.db'}")
    new_run(database, document(1, 2525))
    app = console(database)
    async with app.run_test(size=NARROW) as pilot:
        await settle(pilot)
        summary = str(app.screen.query_one("#runs-summary", Static).render())
        assert summary == "1 run · 1 running · 1 definition"


@pytest.fixture
def own_sample_db(tmp_path: Path) -> Database:
    """A sample database of its own, for a test that changes it."""
    return sample_database(tmp_path)


async def test_the_console_never_reads_or_writes_the_database_on_the_ui_thread(
    own_sample_db: Database,
) -> None:
    """Every screen and every confirmed write, with each statement's thread checked."""
    database = own_sample_db
    on_ui: list[str] = []

    def check(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            on_ui.append(statement.split("\n")[0][:80])

    event.listen(database.engine, "before_cursor_execute", check)
    launched: list[int] = []
    app = console(database, launch=lambda url, run_id, **_: launched.append(run_id))
    async with app.run_test(size=NARROW) as pilot:

        async def press(*keys: str) -> None:
            for key in keys:
                await pilot.press(key)
                await settle(pilot)

        await settle(pilot)
        await press("enter")  # run 4
        await press("f", "slash", *"example", "enter", "G", "g", "m", "escape", "enter")
        assert isinstance(app.screen, CustomerScreen)
        await press("escape", "x", "y")  # stop run 4
        await press("R", "y", "escape")  # restart it
        await press("c", *"a", "enter", "enter", "escape", "escape")  # customer search
        await press("n", "enter", "enter", "escape", "s", "y")  # plan, reasons, start a run
        assert isinstance(app.screen, RunScreen)
        await press("escape", "escape", "p", "enter")  # an SMTP profile: edit, save
        app.screen.query_one("#field-port", Input).value = "2526"
        await press("ctrl+s", "escape", "escape")
        await press("t", "d", "y", "r", "y")  # routines: disable one, run one now
        assert isinstance(app.screen, RunScreen)
    event.remove(database.engine, "before_cursor_execute", check)
    # Every write was done: a stop, a restart, a run started, a profile saved, a routine off.
    assert len(launched) == 3
    assert load_profile(database, "main").port == 2526
    assert not {v.definition: v for v in list_routines(database, NOW)}["invoice-email"].enabled
    assert on_ui == []


async def test_the_footer_offers_what_the_runs_state_allows_and_every_key_still_answers(
    sample_db: Database,
) -> None:
    """At 80 columns the footer cannot hold every key of a run: it offers those the
    run's state allows; a key it does not offer still answers, saying why not."""

    def footer_actions(app: Any) -> set[str]:
        return {
            active.binding.action
            for active in app.screen.active_bindings.values()
            if active.binding.show and active.enabled
        }

    app = console(sample_db)
    async with app.run_test(size=NARROW, notifications=True) as pilot:
        await on(lambda: RunScreen(3))(pilot)  # completed with failures, 2 unknown
        offered = footer_actions(app)
        assert {"resend_unknown", "export", "follow_up", "message", "next_filter"} <= offered
        assert not {"stop", "restart"} & offered
        await pilot.press("x")
        await settle(pilot)
        assert any("nothing to stop" in str(t.render()) for t in app.screen.query("Toast"))
        await pilot.press("R")  # not offered (nothing to send) but still asks, and says what
        await settle(pilot)
        assert type(app.screen).__name__ == "Confirm"
        await pilot.press("n")
        await settle(pilot)
        await pilot.press("escape")
        await on(lambda: RunScreen(2))(pilot)  # stopped with pending
        offered = footer_actions(app)
        assert {"restart", "follow_up", "export"} <= offered
        assert not {"stop", "resend_unknown"} & offered


async def test_the_footer_follows_a_run_that_ends_while_it_is_open(tmp_path: Path) -> None:
    from tests.delivery_support import fabricate_run_state

    def drawn(app: Any) -> set[str]:  # the keys the footer shows, as drawn
        return {key.action for key in app.screen.query("FooterKey")}

    database = open_database(f"sqlite:///{tmp_path / 'ends.db'}")
    run_id = new_run(database, document(3, 2525))
    with database.connect() as c:
        fabricate_run_state(c, run_id, "running")
    app = console(database)
    async with app.run_test(size=NARROW) as pilot:
        await on(lambda: RunScreen(run_id))(pilot)
        assert "stop" in drawn(app) and "follow_up" not in drawn(app)
        with database.connect() as c:
            fabricate_run_state(c, run_id, "stopped")
        app.refresh_screen()
        await settle(pilot)
        assert "stop" not in drawn(app) and "follow_up" in drawn(app)


async def test_a_notice_raised_during_a_question_shows_once_it_is_answered(
    sample_db: Database,
) -> None:
    def toasts(app: Any) -> list[str]:
        return [str(t.render()) for t in app.screen.query("Toast")]

    app = console(sample_db)
    async with app.run_test(size=NARROW, notifications=True) as pilot:
        await on(lambda: RunScreen(3), "x")(pilot)
        assert any("nothing to stop" in t for t in toasts(app))
        await pilot.press("R")
        await settle(pilot)
        assert type(app.screen).__name__ == "Confirm"
        app.notify("raised while asking")
        await settle(pilot)
        assert toasts(app) == []
        await pilot.press("n")
        await settle(pilot)
        shown = toasts(app)
        assert any("raised while asking" in t for t in shown), shown


@pytest.fixture
def utf8_run(tmp_path: Path) -> tuple[Database, int]:
    """A run to a server without SMTPUTF8: one address needs it; customer ids are long."""
    from fixtures.smtp_servers import SmtpServer
    from tests.delivery_support import deliver_now

    database = open_database(f"sqlite:///{tmp_path / 'utf8.db'}")
    with SmtpServer(smtputf8=False) as server:
        doc = document(2, server.port)
        doc["customers"][1]["contacts"][0]["addresses"][0]["address"] = "josé@exemplo.com.br"
        for i, customer in enumerate(doc["customers"]):
            customer["id"] = f"CUSTOMER-2026-{i:06d}"
            customer["contacts"][0]["id"] = f"CUSTOMER-2026-{i:06d}-1"
            doc["documents"][i]["customer"] = customer["id"]
        run_id = new_run(database, doc)
        deliver_now(database, run_id)
    return database, run_id


async def test_msgrun_s_own_verdict_is_shown_as_msgrun_s_and_long_ids_keep_their_end(
    utf8_run: tuple[Database, int],
) -> None:
    database, run_id = utf8_run
    app = console(database)
    async with app.run_test(size=NARROW) as pilot:
        await on(lambda: RunScreen(run_id))(pilot)
        table = recipients(app)
        (row,) = table.get_row_at(1)
        customer, _, _, _, state, reply = row.plain.split(maxsplit=5)  # document: 2 words
        # Ids that share a prefix differ at the end: that is what stays.
        assert (customer, state) == ("C…000001", "failed")
        assert [row.plain[s.start : s.end] for s in row.spans if s.style == "red"] == ["failed"]
        assert reply.rstrip() == "msgrun: the…"  # msgrun's words, not a "553" from the server
        await pilot.press("j", "m")
        await settle(pilot)
        delivery = " ".join(str(app.screen.query_one("#delivery", Static).render()).split())
        assert "msgrun's own verdict (the server said nothing): msgrun: the address needs " in (
            delivery
        )
        assert "the server replied" not in delivery


async def test_customer_search_counts_every_match_beyond_those_listed(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'many.db'}")
    load_ok(database, document(260, 2525))
    app = console(database)
    async with app.run_test(size=NARROW) as pilot:
        await on(CustomerScreen, "enter", typed="CUSTOMER")(pilot)
        screen = app.screen
        found = str(screen.query_one("#customer-found", Static).render())
        assert found == "260 customers match 'CUSTOMER' — showing the first 100"
        assert screen.query_one("#customer-matches", DataTable).row_count == 100


def test_definitions_at_80_by_24(snap_compare: Any, sample_db: Database) -> None:
    from tui.console.plan_screen import DefinitionsScreen

    assert snap_compare(console(sample_db), terminal_size=NARROW, run_before=on(DefinitionsScreen))


def test_smtp_profiles_at_80_by_24(snap_compare: Any, tmp_path: Path) -> None:
    from tests.test_console_smtp import PLAIN, profile_database
    from tui.console.profiles_screen import ProfilesScreen

    database = profile_database(tmp_path, port=PLAIN)  # a fixed port: the picture shows it
    assert snap_compare(console(database), terminal_size=NARROW, run_before=on(ProfilesScreen))


def test_routines_at_80_by_24(snap_compare: Any, tmp_path: Path) -> None:
    from tests.test_console_routines import routines_database
    from tui.console.routines_screen import RoutinesScreen

    database = routines_database(tmp_path)
    assert snap_compare(console(database), terminal_size=NARROW, run_before=on(RoutinesScreen))
