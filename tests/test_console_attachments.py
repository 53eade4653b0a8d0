"""The console shows what each message carried: the recipient view and the drill-down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Static

from core.storage import Database
from fixtures.smtp_servers import SmtpServer
from tests.attachment_support import sha256
from tests.console_support import console
from tests.delivery_support import deliver_now, new_run
from tests.test_attachments_delivery import invoices
from tests.test_console import SIZE, settle
from tui.console.customer_screen import CustomerScreen
from tui.console.message_screen import MessageScreen


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
