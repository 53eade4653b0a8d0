"""``msgrun bounces read|list|show`` and ``msgrun suppressions list|lift``."""

from __future__ import annotations

import argparse
import json
import sys

from core.addresses import address_problem
from core.bounces.queries import (
    NotSuppressed,
    UnknownReport,
    get_report,
    lift_suppression,
    list_outcomes,
    list_suppressions,
    stamp,
)
from core.bounces.sources import Source, SourceError, SourceUnavailable, check_source
from core.bounces.store import ReadSummary, StoreFailed, read_source
from core.clock import SystemClock
from core.storage import Database, DatabaseUnavailable, DatabaseUrlError, open_database
from tui.commands.common import database, existing_run
from tui.errors import OperationFailed, UsageError
from tui.output import write_out

EX_TEMPFAIL = 75


class TemporaryFailure(OperationFailed):
    """The database could not store what was read: an MTA keeps the message and tries again."""

    exit_code = EX_TEMPFAIL


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    bounces = commands.add_parser("bounces", help="reports read back: bounces, complaints")
    actions = bounces.add_subparsers(dest="bounces_command", metavar="ACTION", required=True)
    read = actions.add_parser(
        "read",
        parents=[common],
        help="read reports from Maildirs, files, standard input or IMAP folders",
        description="Read every message of each SOURCE: a Maildir, a file holding one message, "
        "- (standard input) or imap://USER@HOST[:PORT]/FOLDER (imaps:// too; the password "
        "from MSGRUN_IMAP_PASSWORD). Reports are stored once, tied to their recipients, and "
        "marked read in their source; anything else is left exactly where it was.",
    )
    read.add_argument("sources", nargs="+", metavar="SOURCE")
    read.add_argument(
        "--envelope-to",
        metavar="ADDR",
        help="the address a message on standard input was delivered to",
    )
    read.add_argument("--json", action="store_true", help="print one JSON object")
    read.set_defaults(handler=bounces_read)

    listing = actions.add_parser("list", parents=[common], help="reports read, newest first")
    listing.add_argument("--run", metavar="RUN", help="only outcomes about this run's recipients")
    listing.add_argument(
        "--unmatched", action="store_true", help="only outcomes tied to no recipient"
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=bounces_list)

    show = actions.add_parser(
        "show", parents=[common], help="a report: how msgrun read it, and the raw message"
    )
    show.add_argument("report", metavar="REPORT")
    show.set_defaults(handler=bounces_show)

    suppressions = commands.add_parser("suppressions", help="addresses that are not mailed")
    sactions = suppressions.add_subparsers(
        dest="suppressions_command", metavar="ACTION", required=True
    )
    slist = sactions.add_parser("list", parents=[common], help="every suppressed address")
    slist.add_argument("--json", action="store_true", help="print a JSON array")
    slist.set_defaults(handler=suppressions_list)
    lift = sactions.add_parser(
        "lift", parents=[common], help="lift an address's suppression (mail it again)"
    )
    lift.add_argument("address", metavar="ADDRESS")
    lift.set_defaults(handler=suppressions_lift)


def _open_for_reading(url: str | None) -> Database:
    try:
        return open_database(url)
    except DatabaseUrlError as error:
        raise UsageError(str(error)) from None
    except DatabaseUnavailable as error:
        raise TemporaryFailure(str(error)) from None


def bounces_read(args: argparse.Namespace) -> int:
    # Every source is checked first; a bad one and nothing is read.
    sources: list[Source] = []
    problems: list[str] = []
    if args.sources.count("-") > 1:
        problems.append("- (standard input) may be given once")
    if args.envelope_to is not None and (wrong := address_problem(args.envelope_to)):
        problems.append(f"--envelope-to {args.envelope_to!r} is not an email address: {wrong}")
    for spec in dict.fromkeys(args.sources):
        try:
            sources.append(check_source(spec))
        except SourceError as error:
            problems.append(str(error))
    if problems:
        raise UsageError("; ".join(problems))
    db = _open_for_reading(args.db)
    summary = ReadSummary()
    failure: str | None = None
    try:
        for source in sources:
            read_source(db, source, SystemClock().now(), summary, args.envelope_to)
    except SourceUnavailable as error:
        failure = str(error)
    except StoreFailed as error:
        _print_summary(summary, args.json)
        raise TemporaryFailure(str(error)) from None
    finally:
        db.dispose()
    _print_summary(summary, args.json)
    if failure is not None:
        raise OperationFailed(failure)
    return 0


def _print_summary(summary: ReadSummary, as_json: bool) -> None:
    if as_json:
        write_out(json.dumps(summary.as_json(), ensure_ascii=False))
    else:
        write_out(summary.line())


def _report_id(text: str) -> int:
    if not text.isdigit():
        raise UsageError(
            f"unknown report {text!r} (report ids are numbers; see msgrun bounces list)"
        )
    return int(text)


def bounces_list(args: argparse.Namespace) -> int:
    db = database(args.db)
    run_id: int | None = None
    if args.run is not None:

        run_id = existing_run(db, args.run).id  # an unknown run: exit 2, saying so
    rows = list_outcomes(db, run_id=run_id, unmatched=args.unmatched)
    if args.json:
        write_out(json.dumps([r.as_json() for r in rows], ensure_ascii=False))
        return 0
    if not rows:
        write_out("no reports")
        return 0
    lines = []
    for r in rows:
        what = r.type or r.kind
        if r.bounce_class:
            what += f" {r.bounce_class}"
        tied = (
            f"run {r.run} {r.customer} ({r.matched_by})"
            if r.run is not None
            else ("unmatched" if r.type else "-")
        )
        lines.append(
            f"{r.report:>6}  {stamp(r.reported_at)}  {what:<12} {r.status or '-':<8} "
            f"{r.address or '-':<32} {tied}\n"
        )
    write_out(lines)
    return 0


def bounces_show(args: argparse.Namespace) -> int:
    report_id = _report_id(args.report)
    db = database(args.db)
    try:
        view = get_report(db, report_id)
    except UnknownReport as error:
        raise UsageError(f"{error} (see msgrun bounces list)") from None
    lines = view.how_read()
    lines.append("")
    lines.append(view.raw_text())
    write_out("\n".join(lines))
    return 0


def suppressions_list(args: argparse.Namespace) -> int:
    db = database(args.db)
    rows = list_suppressions(db)
    if args.json:
        write_out(json.dumps([r.as_json() for r in rows], ensure_ascii=False))
        return 0
    if not rows:
        write_out("no suppressed addresses")
        return 0
    write_out([f"{r.address}  {r.describe()}\n" for r in rows])
    return 0


def suppressions_lift(args: argparse.Namespace) -> int:
    db = database(args.db)
    try:
        lifted = lift_suppression(db, args.address)
    except NotSuppressed as error:
        raise UsageError(str(error)) from None
    write_out(f"lifted: {lifted.address} ({lifted.describe()})")
    sys.stdout.flush()
    return 0
