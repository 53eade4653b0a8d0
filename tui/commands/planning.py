"""``msgrun plan`` and ``msgrun why``: who is included, and why not."""

from __future__ import annotations

import argparse

from core.planner.load import PlanningError
from core.planner.report import dumps, stream_plan_json
from core.storage.database import Database
from core.views.customers import customer_report, find_customers
from tui.commands.common import database, instant
from tui.errors import UsageError
from tui.output import write_out
from tui.plan_text import stream_plan_text, why_text


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    plan = commands.add_parser(
        "plan",
        parents=[common],
        help="print a definition's plan: every candidate, its decision and reasons",
        description="Plan a definition at an instant: every candidate with its decision "
        "(included, deferred, excluded) and every failing rule.",
    )
    plan.add_argument("definition", help="the definition's id")
    plan.add_argument("--at", help="the instant to plan for (ISO 8601 with offset; default now)")
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.set_defaults(handler=run_plan)

    why = commands.add_parser(
        "why",
        parents=[common],
        help="one customer's data, and why each candidate is included, deferred or excluded",
        description="The customer drill-down: contacts, addresses with keys and preferences, "
        "services, documents, suppressions, history, and for each definition (or the one "
        "named) every candidate's decision with its reasons and fixes.",
    )
    why.add_argument(
        "customer",
        help="the customer: an id, a name or an address (any case; a part of one finds it "
        "when only one customer matches)",
    )
    why.add_argument("--definition", help="only this definition")
    why.add_argument("--at", help="the instant to plan for (ISO 8601 with offset; default now)")
    why.add_argument("--json", action="store_true", help="print one JSON object")
    why.set_defaults(handler=run_why)


def run_plan(args: argparse.Namespace) -> int:
    at = instant(args.at)
    db = database(args.db)
    try:
        # Planned a candidate at a time, never held: a million candidates in the memory
        # of a page of customers.
        stream = stream_plan_json if args.json else stream_plan_text
        pieces = stream(db, args.definition, at)
    except PlanningError as error:
        raise UsageError(str(error)) from None
    write_out(pieces)
    return 0


def run_why(args: argparse.Namespace) -> int:
    at = instant(args.at)
    db = database(args.db)
    customer_id = one_customer(db, args.customer)
    try:
        report = customer_report(db, customer_id, at, definition_id=args.definition)
    except PlanningError as error:
        raise UsageError(str(error)) from None
    write_out(dumps(report.as_json()) if args.json else why_text(report))
    return 0


def one_customer(db: Database, query: str) -> str:
    """The one customer ``query`` names (an id, a name or an address), else exit 2 saying why."""
    found = find_customers(db, query)
    if found.unique is not None:
        return found.unique.id
    if not found.total:
        near = f"; nearest ids: {', '.join(found.nearest)}" if found.nearest else ""
        raise UsageError(
            f"unknown customer {query!r}: no customer's id, name or address matches it{near}"
        )
    listing = "\n".join(f"  {m.id}  {m.name}" for m in found.matches)
    more = (
        f"\n  … and {found.total - len(found.matches):,} more"
        if found.total > len(found.matches)
        else ""
    )
    raise UsageError(
        f"{found.total:,} customers match {query!r}; name one by its id:\n{listing}{more}"
    )
