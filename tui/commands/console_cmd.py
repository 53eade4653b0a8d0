"""``msgrun`` with no arguments (or ``msgrun console``): the console."""

from __future__ import annotations

import argparse
import signal

from tui.commands.common import database


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    console = commands.add_parser(
        "console", parents=[common], help="open the console (the default)"
    )
    console.set_defaults(handler=run_console)


def run_console(args: argparse.Namespace) -> int:
    from tui.console.app import MsgrunConsole

    app = MsgrunConsole(database(getattr(args, "db", None)))
    # The SSH session went away: leave cleanly instead of writing to a dead terminal.
    signal.signal(signal.SIGHUP, lambda *_: app.exit())
    app.run()
    return 0
