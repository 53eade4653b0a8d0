"""``msgrun unsubscribes list [--json]`` and ``msgrun unsubscribes lift ADDRESS
[--definition-kind KIND]``: the unsubscribes msgrun recorded (inbox.md). Answering
one-click requests over HTTP is ``unsubscribe_serve.py``."""

from __future__ import annotations

import argparse

from core.planner.report import dumps
from core.unsubscribe.records import PREFERENCE_OF, lift, listed
from tui.commands.common import database
from tui.errors import UsageError
from tui.output import write_out


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    unsubscribes = commands.add_parser("unsubscribes", help="the unsubscribes msgrun recorded")
    actions = unsubscribes.add_subparsers(
        dest="unsubscribes_command", metavar="ACTION", required=True
    )
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="list the recorded unsubscribes",
        description="Every unsubscribe msgrun recorded: the address, its customer and "
        "contact, the preference it turned off, when, how (one_click, mailto, "
        "feedback_report), and the run and recipient whose message carried the token.",
    )
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(handler=run_list)
    lifting = actions.add_parser(
        "lift",
        parents=[common],
        help="remove the unsubscribes of an address (subscribed again)",
        description="Remove every recorded unsubscribe naming ADDRESS (or only those of "
        "--definition-kind): the customer asked to be subscribed again. Exit 2 when there "
        "is none.",
    )
    lifting.add_argument("address")
    lifting.add_argument(
        "--definition-kind", choices=sorted(PREFERENCE_OF), help="only unsubscribes of this kind"
    )
    lifting.set_defaults(handler=run_lift)


def run_list(args: argparse.Namespace) -> int:
    db = database(args.db)
    with db.connect() as connection:
        records = listed(connection)
    if args.json:
        write_out(dumps(records))
        return 0
    if not records:
        print("no unsubscribes recorded")
        return 0
    for r in records:
        print(
            f"{r['at']}  {r['address']}  customer {r['customer']}, contact {r['contact']}: "
            f"{r['preference']} off ({r['kind']}, {r['how']}, run {r['run']} recipient "
            f"{r['recipient']})"
        )
    return 0


def run_lift(args: argparse.Namespace) -> int:
    db = database(args.db)
    with db.connect() as connection:
        removed = lift(connection, args.address, args.definition_kind)
        if not removed:
            kind = f" of kind {args.definition_kind}" if args.definition_kind else ""
            raise UsageError(f"no unsubscribe{kind} is recorded for {args.address}")
    print(f"{args.address}: {removed} unsubscribe{'s' if removed != 1 else ''} lifted")
    return 0
