"""``msgrun event fire`` and ``msgrun routine list``."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from zoneinfo import ZoneInfo

from core.clock import SystemClock
from core.delivery.starting import who
from core.planner.load import PlanningError
from core.planner.report import dumps
from core.states import EXCLUDED
from core.triggers.events import EventError, fire_event
from core.triggers.routines import RoutineView, list_routines
from core.views.runs import deliverable
from tui.commands.common import database, instant
from tui.errors import UsageError
from tui.next_steps import db_option
from tui.output import write_out


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    event = commands.add_parser("event", help="fire events that start runs")
    event_actions = event.add_subparsers(dest="event_command", metavar="ACTION", required=True)
    fire = event_actions.add_parser(
        "fire",
        parents=[common],
        help="start a run of every enabled definition listening to an event",
        description="Start a run of every enabled definition whose trigger is this event, for "
        "the named customers (all when none is named). The runs are delivered by msgrun worker.",
    )
    fire.add_argument("name", help="the event, e.g. job_selling")
    fire.add_argument(
        "--customer",
        action="append",
        default=[],
        metavar="ID",
        help="a customer the event is about (repeat for several)",
    )
    fire.add_argument("--at", help="plan for this instant (ISO 8601 with offset; default now)")
    fire.set_defaults(handler=event_fire)

    routine = commands.add_parser("routine", help="routines: scheduled definitions")
    routine_actions = routine.add_subparsers(
        dest="routine_command", metavar="ACTION", required=True
    )
    listing = routine_actions.add_parser(
        "list",
        parents=[common],
        help="each routine's schedule, next fire, last run and why it would not send",
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(handler=routine_list)


def event_fire(args: argparse.Namespace) -> int:
    at = instant(args.at)
    db = database(args.db)
    try:
        outcome = fire_event(
            db,
            args.name,
            args.customer,
            at,
            SystemClock(),
            started_by=f"event {args.name} ({who()})",
        )
    except (EventError, PlanningError) as error:
        raise UsageError(str(error)) from None
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for fired in outcome.fired:
        if fired.run_id is None:
            print(f"{fired.definition}: no run started: {fired.blocked}")
            continue
        counts = fired.counts
        print(
            f"{fired.definition}: run {fired.run_id}, {deliverable(counts)} to send, "
            f"{counts.get(EXCLUDED, 0)} excluded (msgrun why CUSTOMER --definition "
            f"{fired.definition} says why); msgrun worker{db_option(args.db)} delivers it"
        )
    return 0


def _when(view: RoutineView) -> str:
    if view.next_fire is None:
        return "never (disabled)"
    local = view.next_fire.astimezone(ZoneInfo(view.timezone))
    return f"{local:%Y-%m-%d %H:%M %Z} ({view.next_fire:%Y-%m-%d %H:%M} UTC)"


def _last(last: dict[str, Any] | None) -> str:
    if last is None:
        return "never fired"
    text = f"{last['scheduled_for']} {last['outcome']}"
    if last["run"] is not None:
        text += f", run {last['run']} {last['run_state'] or ''}".rstrip()
    if last["skipped_fires"]:
        text += f"; {last['skipped_fires']} missed fire(s) skipped"
    return text


def routine_list(args: argparse.Namespace) -> int:
    db = database(args.db)
    views = list_routines(db, SystemClock().now())
    if args.json:
        write_out(dumps({"routines": [v.as_json() for v in views]}))
        return 0
    if not views:
        print('no routines: a definition becomes one with trigger {"type": "routine", …}')
        return 0
    for view in views:
        state = "enabled" if view.enabled else "DISABLED"
        print(f"{view.definition}  {view.cron!r} in {view.timezone}, {state}")
        print(f"  next:  {_when(view)}")
        print(f"  last:  {_last(view.last)}")
        if view.blockers:
            for blocker in view.blockers:
                print(f"  would not send: {blocker.code}: {blocker.detail} → {blocker.fix}")
        else:
            print("  would send now")
    return 0
