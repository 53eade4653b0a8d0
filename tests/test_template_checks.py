"""Templates are checked before a run fails on them: at import (``document`` on a kind
that has none), at plan (rendered for the first 100 included candidates, the errors
among the warnings) and at ``run start`` (refused when they fail for every one)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import update
from textual.widgets import Static

from core.clock import SystemClock, parse_instant
from core.delivery.starting import TemplateFailsForEveryone, create_run
from core.planner.plan import make_plan
from core.planner.render_check import SAMPLE
from core.storage import Database
from core.storage.models import Definition, table_of
from fixtures.smtp_servers import SmtpServer
from tests.conftest import load_ok, url_of
from tests.db_snapshot import snapshot
from tests.delivery_support import AT, deliver_now, document
from tui import cli

ATTRIBUTE_ERROR = "template error: UndefinedError: 'dict object' has no attribute 'title'"


def msgrun(capsys: pytest.CaptureFixture[str], db: Database, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--db", url_of(db)])
    out, err = capsys.readouterr()
    return code, out, err


def titled(count: int, untitled: set[int]) -> dict[str, Any]:
    """``count`` customers greeted by their title; those in ``untitled`` have none."""
    doc = document(count, 2525)
    doc["definitions"][0]["template"]["text"] = "Dear {{ customer.attributes.title }},"
    for i, customer in enumerate(doc["customers"]):
        if i not in untitled:
            customer["attributes"] = {"title": "Mx"}
    return doc


def test_an_import_refuses_document_on_a_broadcast_with_its_path_exit_2_writing_nothing(
    db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    doc = document(3, 2525)
    doc["definitions"][0].update(kind="broadcast")
    doc["definitions"][0]["template"] = {"subject": "News", "text": "{{ document.amount }}"}
    path = tmp_path / "broadcast.json"
    path.write_text(json.dumps(doc))
    before = snapshot(db)
    code, out, err = msgrun(capsys, db, "import", str(path))
    assert code == 2 and out == ""
    assert (
        "definitions[0].template.text: uses `document`, but a broadcast definition has none" in err
    )
    assert "nothing was imported" in err and "Traceback" not in err
    assert snapshot(db) == before


def test_plan_lists_the_customers_a_template_fails_for_among_its_warnings(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # C00002 and C00005 have no title; C00120 neither, but is past the first 100.
    load_ok(db, titled(130, {2, 5, 120}))
    warning = (
        f"template.text fails to render ({ATTRIBUTE_ERROR}) for 2 of the first {SAMPLE} "
        "included: customers C00002, C00005"
    )
    code, out, _ = msgrun(capsys, db, "plan", "inv", "--at", AT, "--json")
    assert code == 0
    plan = json.loads(out)
    assert plan["summary"]["included"] == 130
    assert warning in plan["warnings"]
    code, out, _ = msgrun(capsys, db, "plan", "inv", "--at", AT)
    assert code == 0 and f"! {warning}" in out
    # Some recipients fail, not all: a run can start (they fail with the error).
    run_id = create_run(db, "inv", parse_instant(AT), SystemClock())
    assert run_id == 1


def test_a_template_that_works_adds_no_warning(db: Database) -> None:
    load_ok(db, titled(3, set()))
    plan = make_plan(db, "inv", parse_instant(AT), environ={})
    assert plan.render_check.sampled == 3 and plan.render_check.failures == ()
    assert not [w for w in plan.warnings if "fails to render" in w]


def test_run_start_refuses_a_template_that_fails_for_every_sampled_candidate(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    load_ok(db, titled(4, {0, 1, 2, 3}))
    before = snapshot(db)
    code, out, err = msgrun(capsys, db, "run", "start", "inv", "--detach")
    assert (code, out) == (2, "")
    assert "inv: the template fails to render for every one of the 4 included" in err
    assert f"template.text: {ATTRIBUTE_ERROR}" in err
    assert "nothing was created" in err and "Traceback" not in err
    assert snapshot(db) == before
    with pytest.raises(TemplateFailsForEveryone):
        create_run(db, "inv", SystemClock().now(), SystemClock())


def test_a_broadcast_stored_with_document_in_its_template_is_caught_by_plan_and_start(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database an older msgrun wrote: the import's check did not exist then."""
    doc = document(3, 2525)
    doc["definitions"][0].update(kind="broadcast")
    doc["definitions"][0]["template"] = {"subject": "News", "text": "Hello"}
    load_ok(db, doc)
    definition = table_of(Definition)
    with db.connect() as connection:
        connection.execute(update(definition).values(template_html="<p>{{ document.amount }}</p>"))
    code, out, _ = msgrun(capsys, db, "plan", "inv", "--at", AT, "--json")
    (warning,) = [w for w in json.loads(out)["warnings"] if w.startswith("template.")]
    assert warning.startswith("template.html fails to render (template error: UndefinedError:")
    assert warning.endswith("for 3 of the first 3 included: customers C00000, C00001, C00002")
    before = snapshot(db)
    code, _, err = msgrun(capsys, db, "run", "start", "inv", "--detach")
    assert code == 2 and "template.html: template error" in err
    assert snapshot(db) == before


# -- the console: a render error is the recipient's reason, never a database notice -----


async def _message_view(database: Database, position: int) -> tuple[str, str, list[str]]:
    """``m`` on the recipient at ``position`` of run 1: (delivery, message, notices),
    after the screen was refreshed a few times more (as polls would)."""
    from tests.console_support import console
    from tests.test_console import settle
    from tui.console.message_screen import MessageScreen
    from tui.console.run_screen import RunScreen

    app = console(database)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(pilot)
        await pilot.app.push_screen(RunScreen(1))
        await settle(pilot)
        await pilot.press(*["j"] * position, "m")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, MessageScreen) and screen.position == position
        for _ in range(3):
            app.refresh_screen()
            await settle(pilot)
        delivery = " ".join(str(screen.query_one("#delivery", Static).render()).split())
        message = " ".join(str(screen.query_one("#message", Static).render()).split())
        notices = [f"{n.title}: {n.message}" for n in app._notifications]
    return delivery, message, notices


async def test_m_on_a_pending_recipient_whose_template_fails_shows_the_error_as_its_reason(
    sqlite_db: Database,
) -> None:
    load_ok(sqlite_db, titled(3, {1}))
    create_run(sqlite_db, "inv", parse_instant(AT), SystemClock())
    delivery, message, notices = await _message_view(sqlite_db, 1)
    assert "customer C00001" in delivery and "no reply yet" in delivery
    assert message == (
        f"No message: its template fails to render for this recipient ({ATTRIBUTE_ERROR})."
    )
    assert notices == []


async def test_m_on_a_recipient_failed_by_its_template_shows_the_error_as_its_reason(
    sqlite_db: Database,
) -> None:
    with SmtpServer() as server:
        doc = titled(3, {1})
        doc["smtp_profiles"][0]["port"] = server.port
        load_ok(sqlite_db, doc)
        run_id = create_run(sqlite_db, "inv", parse_instant(AT), SystemClock())
        await asyncio.to_thread(deliver_now, sqlite_db, run_id)
    delivery, message, notices = await _message_view(sqlite_db, 1)
    # Its reason is the render error: how it settled (the first attempt), never a notice.
    assert "state failed" in delivery and f"settled: {ATTRIBUTE_ERROR}" in delivery
    assert message.startswith("No message: its template fails to render for this recipient")
    assert notices == []


async def test_a_load_that_keeps_failing_is_one_notice_not_one_a_poll(
    sqlite_db: Database,
) -> None:
    from tests.console_support import console
    from tests.test_console import settle
    from tui.console.live import LiveScreen

    class Failing(LiveScreen):
        def load(self) -> Any:
            raise OSError("the database went away")

    app = console(sqlite_db, first_screen=Failing)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        for _ in range(4):
            app.refresh_screen()
            await settle(pilot)
        notices = [n.message for n in app._notifications]
    assert len(notices) == 1 and "the database went away" in notices[0]


async def test_the_console_s_plan_preview_lists_the_render_errors_among_its_warnings(
    sqlite_db: Database,
) -> None:
    from tests.console_support import console
    from tests.test_console import settle
    from tui.console.plan_screen import PlanScreen

    load_ok(sqlite_db, titled(3, {1}))
    app = console(sqlite_db)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.app.push_screen(PlanScreen("inv", parse_instant(AT)))
        await settle(pilot)
        notes = " ".join(str(app.screen.query_one("#plan-notes", Static).render()).split())
    assert (
        f"! template.text fails to render ({ATTRIBUTE_ERROR}) for 1 of the first 3 included: "
        "customer C00001" in notes
    )


def test_a_routine_or_an_event_whose_template_fails_for_everyone_makes_no_run_and_says_why(
    db: Database,
) -> None:
    """As run start refuses it: the fire is recorded blocked with the reason, once, and
    no run is made to fail every recipient; run now refuses it too, creating nothing."""
    from core.clock import FixedClock
    from core.run_info import list_runs
    from core.triggers.events import fire_event
    from core.triggers.routines import fire_due, fires, run_now

    doc = titled(4, {0, 1, 2, 3})
    doc["organisation"]["timezone"] = "Australia/Sydney"
    doc["definitions"][0]["trigger"] = {"type": "routine", "cron": "0 9 * * *", "enabled": True}
    load_ok(db, doc)
    clock = FixedClock(parse_instant("2026-11-24T08:58:00+11:00"))
    assert fire_due(db, clock) == []  # first look: watched from now
    clock.set(parse_instant("2026-11-24T09:00:01+11:00"))
    assert fire_due(db, clock) == []
    assert fire_due(db, clock) == []  # not tried again at every look
    (fire,) = fires(db, "inv")
    assert (fire.outcome, fire.run_id) == ("blocked", None)
    assert "the template fails to render for every one of the 4 included" in fire.detail
    assert list_runs(db) == []
    with pytest.raises(TemplateFailsForEveryone):
        run_now(db, "inv", clock, started_by="ops")
    assert list_runs(db) == []

    doc["definitions"][0]["trigger"] = {"type": "event", "event": "job_done"}
    load_ok(db, doc)
    outcome = fire_event(db, "job_done", [], clock.now(), clock, started_by="ops")
    (fired,) = outcome.fired
    assert fired.run_id is None and fired.blocked is not None
    assert "nothing was created" in fired.blocked
    assert list_runs(db) == []
    assert [f.outcome for f in fires(db, "inv")] == ["blocked", "blocked"]
