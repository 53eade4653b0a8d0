"""``msgrun``: the command line. Every command is a thin client of ``core``.

Exit codes: 0 success; 1 the operation failed; 2 bad usage or bad input (the
message names what is wrong, and nothing was changed), a bad ``MSGRUN_*`` setting
too: every command and the console refuse one before doing anything. No traceback
reaches a user; set MSGRUN_DEBUG=1 to see one.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata

from sqlalchemy.exc import DBAPIError

from core import settings
from core.storage.database import error_words
from tui.commands import (
    bounces_cmd,
    console_cmd,
    database_cmd,
    demo_cmd,
    importing,
    planning,
    run_cmd,
    smtp_cmd,
    triggers_cmd,
    unsubscribe_serve,
    unsubscribes_cmd,
)
from tui.errors import OperationFailed, UsageError


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None and self.prog != "msgrun":
            # A command's own parser: a mistyped flag is reported with that
            # command's usage (`msgrun run list`), not the top level's.
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def version() -> str:
    try:
        return metadata.version("msgrun")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="database URL (default: $MSGRUN_DB, else sqlite:///msgrun.db); "
        "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
    )
    parser = Parser(
        prog="msgrun",
        description="Message runs: batch sends of invoices, job sheets, receipts, reminders "
        "and broadcasts over SMTP, with every recipient's decision explained.",
    )
    parser.add_argument("--db", default=None, metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"msgrun {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    importing.add_parser(commands, common)
    planning.add_parsers(commands, common)
    run_cmd.add_parsers(commands, common)
    smtp_cmd.add_parser(commands, common)
    console_cmd.add_parser(commands, common)
    demo_cmd.add_parser(commands, common)
    database_cmd.add_parser(commands, common)
    triggers_cmd.add_parsers(commands, common)
    bounces_cmd.add_parsers(commands, common)
    unsubscribes_cmd.add_parsers(commands, common)
    unsubscribe_serve.add_parser(commands, common)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings.check(os.environ)
    if getattr(args, "handler", None) is None:
        # No command: the console, on the configured database.
        return console_cmd.run_console(args)
    code: int = args.handler(args)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    from tui.console.launcher import die_with_parent

    try:
        die_with_parent()
        return run(argv)
    except (UsageError, OperationFailed) as error:
        print(f"msgrun: {error}", file=sys.stderr)
        return error.exit_code
    except settings.SettingError as error:  # bad usage: nothing was done
        print(f"msgrun: {error}", file=sys.stderr)
        return UsageError.exit_code
    except DBAPIError as error:  # the database failed under a command (read-only, gone)
        print(f"msgrun: database error: {error_words(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("msgrun: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: no traceback for a user
        if _debugging():
            traceback.print_exc()
        print(
            f"msgrun: internal error: {type(error).__name__}: {error} "
            "(run again with MSGRUN_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return 1


def _debugging() -> bool:
    """MSGRUN_DEBUG; off when its value is refused (the error is already on its way)."""
    try:
        return settings.debug(os.environ)
    except settings.SettingError:
        return False


if __name__ == "__main__":
    sys.exit(main())
