"""``msgrun run export RUN``: who got it and who did not, as CSV or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.views import export_rows
from core.views.export_file import (
    FORMATS,
    BadTarget,
    ReaderLeft,
    TargetExists,
    check_target,
    csv_lines,
    named_format,
    write_lines,
)
from tui.commands.common import database, existing_run
from tui.errors import OperationFailed, UsageError
from tui.output import write_out
from tui.progress import progress_bar


def add_parser(actions: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = actions.add_parser(
        "export",
        parents=[common],
        help="every recipient of a run as CSV or JSON (who got it, who did not, and why)",
        description="Write the run's recipients, excluded ones too, one row each: state, "
        "outcome, the server's reply, the reasons of an exclusion. Filters choose those in "
        "the named states or with the named outcomes.",
    )
    parser.add_argument("run")
    parser.add_argument(
        "--state",
        help=f"only these states, comma-separated ({', '.join(export_rows.RECIPIENT_STATES)})",
    )
    outcomes = ", ".join(export_rows.OUTCOME_FILTERS)
    parser.add_argument("--outcome", help=f"only these outcomes, comma-separated ({outcomes})")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="default csv; an --out file named .csv or .json must be written in its format",
    )
    parser.add_argument(
        "--out",
        help="write to this file instead of standard output (a new file: one that exists "
        "is refused unless --force)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the --out file when it exists"
    )
    parser.set_defaults(handler=run_export)


def chosen_format(asked: str | None, out: str | None) -> str:
    """The format to write: the one asked for, else CSV; an ``--out`` file named
    ``.csv`` or ``.json`` is never written in the other format."""
    fmt = asked or "csv"
    named = named_format(out) if out else None
    if named is not None and named != fmt:
        how = f"--format {fmt}" if asked else "the default format, CSV"
        raise UsageError(
            f"--out {out} names a {named.upper()} file, but {how} was chosen: "
            f"add --format {named}, or name the file .{fmt}; nothing was written"
        )
    return fmt


def json_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A JSON array of objects, one per line, written as the rows come."""
    first = True
    for row in rows:
        yield ("[\n" if first else ",\n") + json.dumps(row, ensure_ascii=False)
        first = False
    yield "[]\n" if first else "\n]\n"


def _counted(rows: Iterable[dict[str, Any]], total: int, report: Any) -> Iterator[dict[str, Any]]:
    for done, row in enumerate(rows, start=1):
        if report is not None and done % 500 == 0:
            report("exporting recipients", done, total)
        yield row
    if report is not None:
        report("exporting recipients", total, total)


def run_export(args: argparse.Namespace) -> int:
    try:
        chosen = export_rows.selection(args.state, args.outcome)
    except export_rows.BadFilter as error:
        raise UsageError(str(error)) from None
    fmt = chosen_format(args.format, args.out)
    target = _target(args.out, args.force)
    db = database(args.db)
    run = existing_run(db, args.run)
    rows = export_rows.rows(db, run.id, chosen)
    lines = csv_lines if fmt == "csv" else json_lines
    if target is None:
        write_out(lines(rows))
        return 0
    with progress_bar() as report:
        total = export_rows.count(db, run.id) if report is not None else 0
        try:
            write_lines(target, lines(_counted(rows, total, report)), args.force)
        except TargetExists as error:  # made while the export ran: still not replaced
            raise UsageError(f"--out {error}; nothing was written (--force replaces it)") from None
        except ReaderLeft:  # --out /dev/stdout | head: quiet, as | head is without --out
            return 0
        except BadTarget as error:
            raise OperationFailed(str(error)) from None
    print(f"run {run.id}: exported to {target}", file=sys.stderr)
    return 0


def _target(path: str | None, force: bool) -> Path | None:
    """The file to write, checked before anything is read: its folder must exist, and
    a file already there is replaced only with ``--force``."""
    if path is None or path == "-":
        return None
    try:
        return check_target(path, replace=force)
    except TargetExists as error:
        raise UsageError(f"{error}; nothing was written (--force replaces it)") from None
    except BadTarget as error:
        raise UsageError(str(error)) from None
