"""Restarting a run from the console: confirmed, then delivered from a process of its own
(the run screen's R and U, and the runs list's R for an interrupted run)."""

from __future__ import annotations

from typing import Any

from tui.console.confirm import Confirm
from tui.console.live import LiveScreen


def launch_restart(screen: LiveScreen[Any], run_id: int, resend_unknown: bool = False) -> None:
    """Deliver the run again from a process of its own (``run restart``)."""
    console = screen.console
    console.perform(
        lambda: console.launch(console.db_url, run_id, resend_unknown=resend_unknown),
        lambda _: screen.notify(f"run {run_id} restarted"),
        failure=f"Could not restart run {run_id}",
    )


def confirm_restart(screen: LiveScreen[Any], run_id: int) -> None:
    """Ask, then restart the run (the run screen's R, and the runs list's for an
    interrupted run)."""
    screen.app.push_screen(
        Confirm(
            f"Restart run {run_id}?",
            "Sends what was not sent: pending, due retries, due held. Never a sent "
            "recipient; `unknown` ones only with U.",
        ),
        lambda yes: launch_restart(screen, run_id) if yes else None,
    )
