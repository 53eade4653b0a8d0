"""Delivering from the console: a separate ``msgrun`` process per run.

The console never delivers in its own process: a run goes on if the console
is closed (or the SSH session drops), and stop/restart work from anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys


def deliver_in_background(db_url: str, run_id: int, *, resend_unknown: bool = False) -> None:
    command = [sys.executable, "-m", "tui.cli", "--db", db_url, "run", "restart", str(run_id)]
    if resend_unknown:
        command.append("--resend-unknown")
    subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
