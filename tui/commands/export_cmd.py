"""``msgrun run export RUN``: who got it and who did not, as CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from core.delivery import export
from tui.errors import UsageError
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
        "--state", help=f"only these states, comma-separated ({', '.join(export.RECIPIENT_STATES)})"
    )
    outcomes = ", ".join(export.OUTCOME_FILTERS)
    parser.add_argument("--outcome", help=f"only these outcomes, comma-separated ({outcomes})")
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="default csv")
    parser.add_argument("--out", help="write to this file instead of standard output")
    parser.set_defaults(handler=run_export)


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """RFC 4180 text (CRLF line ends, quotes doubled), a header row first."""
    buffer = _Line()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(export.COLUMNS)
    yield buffer.take()
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in export.COLUMNS])
        yield buffer.take()


def json_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A JSON array of objects, one per line, written as the rows come."""
    first = True
    for row in rows:
        yield ("[\n" if first else ",\n") + json.dumps(row, ensure_ascii=False)
        first = False
    yield "[]\n" if first else "\n]\n"


class _Line:
    """A file-like sink that csv.writer writes into, emptied after each row."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        return text


def _counted(rows: Iterable[dict[str, Any]], total: int, report: Any) -> Iterator[dict[str, Any]]:
    for done, row in enumerate(rows, start=1):
        if report is not None and done % 500 == 0:
            report("exporting recipients", done, total)
        yield row
    if report is not None:
        report("exporting recipients", total, total)


def _write(out: IO[str], pieces: Iterable[str]) -> int:
    written = 0
    for piece in pieces:
        out.write(piece)
        written += 1
    return written


def run_export(args: argparse.Namespace) -> int:
    from tui.commands.common import database
    from tui.commands.runs import existing_run

    try:
        chosen = export.selection(args.state, args.outcome)
    except export.BadFilter as error:
        raise UsageError(str(error)) from None
    target = _target(args.out)
    db = database(args.db)
    run = existing_run(db, args.run)
    rows = export.rows(db, run.id, chosen)
    lines = csv_lines if args.format == "csv" else json_lines
    if target is None:
        from tui.output import write_out

        write_out(lines(rows))
        return 0
    with progress_bar() as report:
        total = export.count(db, run.id) if report is not None else 0
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
                _write(out, lines(_counted(rows, total, report)))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    print(f"run {run.id}: exported to {target}", file=sys.stderr)
    return 0


def _target(path: str | None) -> Path | None:
    """The file to write, checked before anything is read: its folder must exist."""
    if path is None or path == "-":
        return None
    target = Path(path)
    if not path.strip():
        raise UsageError("--out: give a file name")
    if target.is_dir():
        raise UsageError(f"--out {path}: is a folder; name a file in it")
    if not target.parent.is_dir():
        raise UsageError(f"--out {path}: the folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise UsageError(f"--out {path}: the folder {target.parent} cannot be written")
    return target
