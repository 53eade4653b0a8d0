"""``msgrun import FILE``: load an interchange file, all of it or nothing."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import BinaryIO

from core.interchange import UnreadableFile, import_stream, open_file
from tui.commands.common import database, new_sqlite_file
from tui.errors import UsageError
from tui.progress import progress_bar

LARGE_FILE = 1_000_000  # bytes: show a progress bar from here on

NOUNS = {  # key: (one, many)
    "smtp_profiles": ("SMTP profile", "SMTP profiles"),
    "billing_methods": ("billing method", "billing methods"),
    "customers": ("customer", "customers"),
    "contacts": ("contact", "contacts"),
    "addresses": ("address", "addresses"),
    "services": ("service", "services"),
    "documents": ("document", "documents"),
    "suppressions": ("suppression", "suppressions"),
    "definitions": ("definition", "definitions"),
    "history": ("history entry", "history entries"),
}


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "import",
        parents=[common],
        help="load an interchange file (msgrun/1); invalid files are rejected whole",
        description="Load an interchange file. Records upsert by id; an invalid file is "
        "rejected whole with every problem listed, and nothing is written.",
    )
    parser.add_argument("file", help="the msgrun/1 JSON file; - reads standard input")
    parser.add_argument("--check", action="store_true", help="only check the file; write nothing")
    parser.add_argument(
        "--replace-organisation",
        action="store_true",
        help="the file's organisation replaces the database's, when its name differs "
        "(a database holds one organisation; without this, such a file is refused)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    name = "stdin" if args.file == "-" else args.file
    file: BinaryIO
    if args.file == "-":
        # Kept on disk, not in memory: the import reads it a record at a time.
        file = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        shutil.copyfileobj(sys.stdin.buffer, file)
        file.seek(0)
    else:
        try:
            file = open_file(args.file)
        except UnreadableFile as error:
            raise UsageError(str(error)) from None
    with file:
        size = os.fstat(file.fileno()).st_size
        created = new_sqlite_file(args.db)
        db = database(args.db, create=True)
        with progress_bar(size >= LARGE_FILE) as report:
            outcome = import_stream(
                db,
                file,
                report,
                dry_run=args.check,
                replace_organisation=args.replace_organisation,
                # A relative documents_folder is the file's neighbour (stdin: here).
                base=None if args.file == "-" else os.path.dirname(os.path.abspath(args.file)),
            )
    problems, counts = outcome.problems, outcome.counts
    if created is not None and (problems or args.check):
        # Nothing was imported: no new, empty database is left behind either.
        db.dispose()
        for suffix in ("", "-wal", "-shm"):
            created.with_name(created.name + suffix).unlink(missing_ok=True)
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        print(f"{name}: {len(problems)} {noun}; nothing was imported", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    verb = "is valid" if args.check else "imported"
    parts = [
        f"{counts[key]} {one if counts[key] == 1 else many}"
        for key, (one, many) in NOUNS.items()
        if counts.get(key)
    ]
    print(f"{name} {verb}: " + ", ".join(["the organisation", *parts]))
    return 0
