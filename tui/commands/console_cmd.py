"""``msgrun`` with no arguments (or ``msgrun console``): the console."""

from __future__ import annotations

import argparse
import signal
import sys

from tui.commands.common import database
from tui.errors import UsageError


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    console = commands.add_parser(
        "console", parents=[common], help="open the console (the default)"
    )
    console.set_defaults(handler=run_console)


def require_terminal() -> None:
    """The console draws on a terminal: without one (a pipe, /dev/null) it would spin."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "msgrun console needs a terminal (standard input and output are not one); "
            "the commands (msgrun run list, msgrun plan …) work without"
        )


def run_console(args: argparse.Namespace) -> int:
    require_terminal()
    from tui.console.app import MsgrunConsole

    app = MsgrunConsole(database(getattr(args, "db", None)))
    # The SSH session went away: leave cleanly instead of writing to a dead terminal.
    signal.signal(signal.SIGHUP, lambda *_: app.exit())
    app.run()
    return 0
