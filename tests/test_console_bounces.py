"""The console's Bounces screen (reports read back, unmatched ones too, the raw report on
enter), and reports in the customer drill-down, which leads with the run's own record of the
recipient it was opened from.

Reached from Runs with `b` and from the command palette on every screen; read
through core/views/bounces.py in a worker, never on the UI thread. Pictures at
80×24 and wide, every load finished, read at a fixed instant.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from core.bounces.sources import SourceMessage
from core.bounces.store import ReadSummary, record_message
from core.clock import FixedClock, parse_instant
from core.delivery.starting import create_run
from core.storage import Database, open_database
from core.storage.models import Recipient, table_of
from core.views.bounces import bounces_overview, report_detail, what
from core.views.customers import recorded_recipient, reports_about
from tests.bounce_support import NOW, SAMPLES, arf_abuse, postfix_dsn
from tests.conftest import load_ok
from tests.console_support import console, sample_database
from tests.delivery_support import AT, document
from tests.test_console import settle
from tui.console.bounces_screen import BouncesScreen, ReportScreen
from tui.console.customer_screen import CustomerScreen
from tui.console.help_screen import HelpScreen
from tui.console.run_screen import RunScreen

NARROW = (80, 24)
WIDE = (160, 32)
pytestmark = pytest.mark.timeout(120)


def read_reports(db: Database) -> int:
    """A run of four recipients, and reports about them read at NOW: a hard bounce (matched
    by Message-ID), a soft one, a complaint, an out-of-office and a bounce about an address
    msgrun never sent to (unmatched). Returns the run's id."""
    load_ok(db, document(4, port=2525))
    # A fixed token: the Message-IDs (shown in a picture) are the same every time.
    run_id = create_run(db, "inv", parse_instant(AT), FixedClock(NOW), token="b0c0ffee")
    when = NOW - timedelta(hours=1)
    with db.session() as session:
        session.execute(
            update(Recipient)
            .where(Recipient.run_id == run_id)
            .values(state="sent", sent_at=when, updated_at=when, smtp_code=250)
        )
        rows = list(
            session.scalars(
                select(Recipient).where(Recipient.run_id == run_id).order_by(Recipient.position)
            )
        )
    a, b, c, _ = rows
    raws = [
        postfix_dsn(a.message_id, a.address or ""),
        postfix_dsn(b.message_id, b.address or "", status="4.2.2", own_id="<soft-1@mx.example>"),
        arf_abuse(c.message_id, "x@isp.example"),
        (SAMPLES / "ooo_en.eml").read_bytes(),
        postfix_dsn(None, "stranger@example.net", own_id="<other-1@mx.example>"),
    ]
    summary = ReadSummary()
    for i, raw in enumerate(raws):
        record_message(db, SourceMessage(f"new/m{i}", raw, lambda: None), NOW, summary)
    assert (summary.hard, summary.soft, summary.complaints, summary.unmatched) == (1, 1, 1, 1)
    return run_id


@pytest.fixture(scope="module")
def bounce_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    database = open_database(f"sqlite:///{tmp_path_factory.mktemp('bounces') / 'console.db'}")
    read_reports(database)
    return database


def on_bounces(*pressed: str) -> Any:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


# -- the read model ------------------------------------------------------------------------


def test_the_overview_lists_every_report_newest_first_unmatched_and_auto_replies_too(
    db: Database,
) -> None:
    run_id = read_reports(db)
    overview = bounces_overview(db)
    assert (overview.reports, overview.unmatched, overview.more) == (5, 1, False)
    got = [(what(r), r.status, r.address, r.run, r.matched_by) for r in overview.rows]
    assert got == [
        ("bounce hard", "5.1.1", "stranger@example.net", None, None),
        ("auto_reply", None, None, None, None),
        ("complaint", None, "x@isp.example", run_id, "message_id"),
        ("bounce soft", "4.2.2", "p1@example.org", run_id, "message_id"),
        ("bounce hard", "5.1.1", "p0@example.org", run_id, "message_id"),
    ]
    assert len(bounces_overview(db, limit=2).rows) == 2 and bounces_overview(db, limit=2).more
    only = bounces_overview(db, unmatched=True)
    assert [(r.address, r.run) for r in only.rows] == [("stranger@example.net", None)]
    assert (only.reports, only.unmatched) == (5, 1)
    detail = report_detail(db, overview.rows[-1].report)
    how = detail.how_read()
    assert how[0] == f"report {detail.id}: dsn"
    assert any(
        line.startswith("  outcome     bounce hard 5.1.1 p0@example.org: run ")
        and line.endswith("by message_id")
        for line in how
    )
    assert "Final-Recipient" in detail.raw_text() and "\r\n" not in detail.raw_text()


# -- pictures ------------------------------------------------------------------------------


def test_bounces_at_80_by_24(snap_compare: Any, bounce_db: Database) -> None:
    """When, what, status and address stay; the line under the table names run and customer."""
    assert snap_compare(console(bounce_db), terminal_size=NARROW, run_before=on_bounces())


def test_bounces_on_a_wide_terminal_show_run_customer_and_match(
    snap_compare: Any, bounce_db: Database
) -> None:
    assert snap_compare(console(bounce_db), terminal_size=WIDE, run_before=on_bounces("j"))


def test_a_report_shows_how_it_was_read_and_the_raw_message_at_80_by_24(
    snap_compare: Any, bounce_db: Database
) -> None:
    keys = ["j"] * 4 + ["enter"]  # the oldest: p0's hard bounce
    assert snap_compare(console(bounce_db), terminal_size=NARROW, run_before=on_bounces(*keys))


def test_no_reports_yet_says_how_to_read_them(snap_compare: Any, tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    assert snap_compare(console(database), terminal_size=NARROW, run_before=on_bounces())


# -- keys ----------------------------------------------------------------------------------


async def test_b_from_runs_enter_on_a_report_and_back(bounce_db: Database) -> None:
    app = console(bounce_db)
    async with app.run_test(size=NARROW) as pilot:
        await on_bounces()(pilot)
        screen = app.screen
        assert isinstance(screen, BouncesScreen)
        table = screen.query_one("#bounces", DataTable)
        assert table.row_count == 5
        summary = str(screen.query_one("#bounces-summary", Static).render())
        assert summary == "5 reports · 1 unmatched"
        line = str(screen.query_one("#bounce-line", Static).render())
        assert line == f"report {screen.items[0].report} · dsn · unmatched"
        await pilot.press("j", "j")
        await settle(pilot)
        complaint = screen.items[table.cursor_row]
        assert complaint.type == "complaint"
        line = str(screen.query_one("#bounce-line", Static).render())
        assert line == (
            f"report {complaint.report} · complaint · run {complaint.run} · "
            f"{complaint.customer} · by message_id"
        )
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReportScreen) and app.screen.report_id == complaint.report
        how = str(app.screen.query_one("#report-how", Static).render())
        assert f"report {complaint.report}: complaint" in how
        assert "Feedback-Type: abuse" in str(app.screen.query_one("#report-raw", Static).render())
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        # f: the unmatched only, and back to all.
        await pilot.press("f")
        await settle(pilot)
        assert [(r.address, r.run) for r in screen.items] == [("stranger@example.net", None)]
        summary = str(screen.query_one("#bounces-summary", Static).render())
        assert summary == "5 reports · 1 unmatched · showing the unmatched only (f: all)"
        await pilot.press("f")
        await settle(pilot)
        assert table.row_count == 5
        await pilot.press("escape")
        await settle(pilot)
        assert type(app.screen).__name__ == "RunsScreen"
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        assert "Bounces" in str(app.screen.query("Static").last().render())


async def test_the_palette_opens_bounces_from_any_screen(bounce_db: Database) -> None:
    app = console(bounce_db)
    async with app.run_test(size=NARROW) as pilot:
        await settle(pilot)
        await app.push_screen(CustomerScreen())
        await settle(pilot)
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert "Bounces" in commands
        commands["Bounces"].callback()
        await settle(pilot)
        assert isinstance(app.screen, BouncesScreen)
        assert app.screen.query_one("#bounces", DataTable).row_count == 5
        # Asked for again on the Bounces screen itself, it does not stack a second one.
        depth = len(app.screen_stack)
        {c.title: c for c in app.get_system_commands(app.screen)}["Bounces"].callback()
        await settle(pilot)
        assert len(app.screen_stack) == depth


async def test_bounces_never_read_the_database_on_the_ui_thread(bounce_db: Database) -> None:
    on_ui: list[str] = []

    def check(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            on_ui.append(statement.split("\n")[0][:80])

    event.listen(bounce_db.engine, "before_cursor_execute", check)
    app = console(bounce_db, poll_seconds=0.05)
    try:
        async with app.run_test(size=NARROW) as pilot:
            await on_bounces("j", "enter", "escape", "G", "enter", "escape", "escape")(pilot)
            await pilot.press("ctrl+r")
            await settle(pilot)
    finally:
        event.remove(bounce_db.engine, "before_cursor_execute", check)
    assert on_ui == []


async def test_an_unknown_report_is_a_notice_not_a_traceback(bounce_db: Database) -> None:
    app = console(bounce_db)
    async with app.run_test(size=NARROW, notifications=True) as pilot:
        await settle(pilot)
        await app.push_screen(ReportScreen(999))
        await settle(pilot)
        toasts = [str(t.render()) for t in app.screen.query("Toast")]
        assert any("unknown report 999" in t for t in toasts), toasts


# -- the customer drill-down: reports, and the run's recipient first ------------------------


def bounced_sample(folder: Path) -> Database:
    """The console's sample database; Ana's invoice (run 1, recipient 1) then hard-bounced."""
    database = sample_database(folder)
    with database.connect() as connection:
        message_id = connection.execute(
            select(table_of(Recipient).c.message_id).where(
                table_of(Recipient).c.run_id == 1, table_of(Recipient).c.position == 0
            )
        ).scalar_one()
    raw = postfix_dsn(message_id, "ana.souza@example.org")
    summary = ReadSummary()
    record_message(database, SourceMessage("new/ana", raw, lambda: None), NOW, summary)
    assert summary.hard == 1
    return database


@pytest.fixture(scope="module")
def bounced_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    return bounced_sample(tmp_path_factory.mktemp("bounced"))


def from_run_1(*pressed: str) -> Any:
    """Run 1's recipients, the cursor moved with `pressed`, then enter (Why?)."""

    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(RunScreen(1))
        await settle(pilot)
        for key in [*pressed, "enter"]:
            await pilot.press(key)
            await settle(pilot)

    return run


def test_the_reports_about_a_customer_and_a_recipient_as_its_run_recorded_it(db: Database) -> None:
    run_id = read_reports(db)
    [soft] = reports_about_customer(db, "C00001")
    assert (soft.outcome, soft.status, soft.run, soft.position) == (
        "bounce_soft",
        "4.2.2",
        run_id,
        1,
    )
    assert soft.detail is not None and soft.detail.startswith("450 4.2.2")
    assert reports_about_customer(db, "C00003") == []
    recorded = recorded_recipient(db, run_id, 0)
    assert (recorded.detail.decision, recorded.detail.state, recorded.detail.address) == (
        "included",
        "sent",
        "p0@example.org",
    )
    assert recorded.outcome is not None
    assert (recorded.outcome.name, recorded.outcome.status) == ("bounce_hard", "5.1.1")
    assert recorded_recipient(db, run_id, 3).outcome is None


def reports_about_customer(db: Database, customer_id: str) -> list[Any]:
    with db.connect() as connection:
        return reports_about(connection, customer_id)


def test_a_bounced_recipient_s_drill_down_from_its_run_at_80_by_24(
    snap_compare: Any, bounced_db: Database
) -> None:
    """Ana's record first (included, sent, then a hard bounce), her report, then today's plan."""
    assert snap_compare(console(bounced_db), terminal_size=NARROW, run_before=from_run_1())


def test_an_excluded_recipient_s_drill_down_from_its_run_at_80_by_24(
    snap_compare: Any, bounced_db: Database
) -> None:
    """Carla (recipient 3): excluded as suppressed, as the run recorded it; nothing sent."""
    assert snap_compare(console(bounced_db), terminal_size=NARROW, run_before=from_run_1("j", "j"))


async def test_from_a_recipient_the_drill_down_leads_with_the_run_s_record(
    bounced_db: Database,
) -> None:
    app = console(bounced_db)
    async with app.run_test(size=NARROW) as pilot:
        await from_run_1()(pilot)
        screen = app.screen
        assert isinstance(screen, CustomerScreen) and screen.recipient == (1, 0)
        text = str(screen.query_one("#customer-report", Static).render())
        lines = text.split("\n")
        assert lines[0] == "Run 1 · invoice-email · recipient 1, as the run recorded it"
        assert lines[2] == "  decision  included"
        assert lines[3].startswith("  delivery  sent · 1 attempt · sent ")
        assert lines[4] == "            250 2.0.0 Ok: queued as M000001"
        # What the message carried: the invoice's PDF, its size and when.
        assert lines[5].startswith("            sent Invoice 2026-0042.pdf, 618 bytes, 2026-")
        assert lines[6] == (
            "  outcome   bounce_hard 5.1.1 · reported 2026-11-28 09:12 UTC · report 1"
        )
        assert lines[7].startswith("            550 5.1.1 <ana.souza@example.org>")
        # Then the customer with her report, then what a plan would decide now (by the
        # console's clock, not the run's planning instant), with today's data.
        assert "Reports (bounces, complaints, delays; UTC):" in lines
        assert "  2026-11-28 09:12  bounce_hard 5.1.1  ana.souza@example.org · run 1" in lines
        assert "What a plan would decide now (2026-11-22T23:30:00+00:00), with today's data:" in (
            lines
        )
        assert not any(line.startswith("Decisions at") for line in lines)
        # Searching another customer leaves the recipient behind.
        await pilot.press("slash", *"C002", "enter")
        await settle(pilot)
        text = str(screen.query_one("#customer-report", Static).render())
        assert screen.recipient is None and text.startswith("Customer C002")


async def test_opened_with_a_recipient_given_and_opened_without_one(bounced_db: Database) -> None:
    app = console(bounced_db)
    async with app.run_test(size=NARROW) as pilot:
        await settle(pilot)
        await app.push_screen(CustomerScreen("C017", definition="invoice-email", recipient=(1, 18)))
        await settle(pilot)
        text = str(app.screen.query_one("#customer-report", Static).render())
        assert text.startswith("Run 1 · invoice-email · recipient 19, as the run recorded it")
        assert "  delivery  failed · 1 attempt\n            550 5.1.1 no such mailbox" in text
        assert "  outcome   none reported" in text
        await pilot.press("escape")
        await settle(pilot)
        # The customer search (no run behind it): the drill-down as before, with her report.
        await app.push_screen(CustomerScreen("C001"))
        await settle(pilot)
        text = str(app.screen.query_one("#customer-report", Static).render())
        lines = text.split("\n")
        assert lines[0].startswith("Customer C001") and lines[3] == (
            "Reports (bounces, complaints, delays; UTC):"
        )
        assert any(line.startswith("Decisions at ") for line in lines)
