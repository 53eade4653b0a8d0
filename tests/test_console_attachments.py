"""The console shows what each message carried: the recipient view and the drill-down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static

from core.clock import parse_instant
from core.storage import Database
from fixtures.smtp_servers import SmtpServer
from tests.attachment_support import sha256
from tests.conftest import STORY_AT, SUNNY_SIDE, load_ok, sample
from tests.console_support import console
from tests.delivery_support import deliver_now, new_run
from tests.test_attachments_delivery import invoices
from tests.test_console import SIZE, settle
from tui.console.customer_screen import CustomerScreen
from tui.console.message_screen import MessageScreen
from tui.console.plan_screen import CandidateScreen, PlanScreen


@pytest.fixture
def delivered(db: Database, tmp_path: Path) -> int:
    """A run of one invoice, sent with its PDF."""
    with SmtpServer() as server:
        run_id = new_run(db, invoices(tmp_path / "docs", 1, server.port))
        assert deliver_now(db, run_id).state == "completed"
    return run_id


async def test_the_recipient_view_and_the_drill_down_list_the_attached_invoice(
    db: Database, tmp_path: Path, delivered: int
) -> None:
    run_id = delivered
    own = (tmp_path / "docs" / "2026" / "2026-00000.pdf").read_bytes()
    app = console(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.push_screen(MessageScreen(run_id, 0, None))
        await settle(pilot)
        delivery = str(app.screen.query_one("#delivery", Static).render())
        assert f"sent 2026-00000.pdf, {len(own)} bytes, " in delivery
        assert f"sha256 {sha256(own)}" in delivery.replace("\n", "")
        await app.push_screen(CustomerScreen("C00000", definition="inv", recipient=(run_id, 0)))
        await settle(pilot)
        report: Any = app.screen.query_one("#customer-report").render()
        assert f"sent 2026-00000.pdf, {len(own)} bytes, " in str(report)


async def first_candidate_shown(db: Database, definition: str) -> str:
    """The console's view of the first candidate of ``definition``'s plan preview."""
    app = console(db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.push_screen(PlanScreen(definition, parse_instant(STORY_AT)))
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PlanScreen) and screen.plan is not None
        await app.push_screen(CandidateScreen(screen.plan.candidates[0]))
        await settle(pilot)
        return str(app.screen.query_one(Static).render())


async def test_the_plan_preview_shows_rules_19_and_20_with_their_fixes(
    db: Database, tmp_path: Path
) -> None:
    document = sample(SUNNY_SIDE)  # its broadcast attaches a price list and a missing form
    load_ok(db, document)
    text = await first_candidate_shown(db, "job-selling")
    assert "document_file_missing: the definition's file Bestellschein-2026.pdf: no such file" in (
        text
    )
    assert "fix: Generate the document's PDF, or correct its path." in text
    assert "message_too_large: the message with its 1 attachment (3,625 bytes of files)" in text
    assert "fix: Send a link instead, or a smaller file." in text


async def test_a_candidate_whose_data_looks_like_markup_is_shown_as_written(
    db: Database,
) -> None:
    """Customer data is data in the candidate's view too: an address (invalid, so
    stored and excluded) and ids holding console markup are shown as written."""
    from tests.delivery_support import document

    doc = document(1, 2525)
    doc["customers"][0]["contacts"][0]["addresses"][0]["address"] = "[/]@example.org"
    doc["customers"][0]["id"] = "C[b]1"
    doc["customers"][0]["contacts"][0]["id"] = "C[b]1-1"
    doc["documents"][0]["customer"] = "C[b]1"
    load_ok(db, doc)
    text = await first_candidate_shown(db, "inv")
    assert "C[b]1 · [/]@example.org" in text
    assert "invalid_address: '[/]@example.org' is not a valid email address" in text
