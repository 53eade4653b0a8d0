"""Delivering from the console: a separate ``msgrun`` process per run.

The console never delivers in its own process: a run goes on if the console
is closed (or the SSH session drops), and stop/restart work from anywhere.

The demo is the exception: its SMTP server lives in the demo's process, so its
runs must live and die with it. ``TiedLauncher`` starts the delivering process
in the demo's own session (a terminal that goes away hangs it up too), asks
the kernel to end it when the demo dies however it dies, and ends it when the
demo ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from core import settings

PR_SET_PDEATHSIG = 1


def _command(db_url: str, run_id: int, resend_unknown: bool) -> list[str]:
    command = [sys.executable, "-m", "tui.cli", "--db", db_url, "run", "restart", str(run_id)]
    if resend_unknown:
        command.append("--resend-unknown")
    return command


def deliver_in_background(db_url: str, run_id: int, *, resend_unknown: bool = False) -> None:
    subprocess.Popen(
        _command(db_url, run_id, resend_unknown),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )


class TiedLauncher:
    """Starts delivering processes that end with this one (the demo's)."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def __call__(self, db_url: str, run_id: int, *, resend_unknown: bool = False) -> None:
        environ = os.environ.copy()
        # The pid whose death ends the child (settings.die_with).
        environ[settings.DIE_WITH] = str(os.getpid())
        self.children.append(
            subprocess.Popen(
                _command(db_url, run_id, resend_unknown),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=environ,
            )
        )

    def end(self, seconds: float = 10.0) -> None:
        """Stop every child gracefully (SIGTERM: what is in flight finishes), then wait."""
        for child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(seconds)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()


def die_with_parent() -> None:
    """In a child of TiedLauncher: end (SIGTERM, gracefully) when the parent dies.

    Called first thing by ``msgrun``; does nothing unless MSGRUN_DIE_WITH is set.
    """
    try:
        parent = settings.die_with(os.environ)
    finally:  # never passed on to this process's own children
        os.environ.pop(settings.DIE_WITH, None)
    if parent is None:
        return
    # The terminal going away hangs up the demo's whole session: the demo then
    # ends this process gracefully (SIGTERM) rather than the hang-up killing it
    # with messages in flight.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The parent may have died before prctl: then nobody would ever signal us.
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
