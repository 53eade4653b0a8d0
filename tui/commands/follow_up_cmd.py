"""``msgrun run follow-up RUN``: a new run for exactly those the run did not reach."""

from __future__ import annotations

import argparse
import sys

from core.clock import SystemClock
from core.follow_up import (
    FollowUpRefused,
    NothingChosen,
    NotSettled,
    start_follow_up,
)
from core.planner.load import PlanningError
from core.run_info import get_run
from core.states import RUNNING, SETTLED
from core.views import export_rows
from tui.commands.common import database, existing_run
from tui.commands.foreground import foreground, sending_instant, summary
from tui.errors import OperationFailed, UsageError
from tui.next_steps import db_option


def add_parser(actions: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = actions.add_parser(
        "follow-up",
        parents=[common],
        help="send again to exactly the recipients a run did not reach",
        description="A new run of the same definition for the chosen recipients of RUN "
        "(by default those failed and those with a bounce), each planned again now, so a "
        "suppressed address is excluded and a corrected one used. Prints the new run's id, "
        "then delivers it here like run start (or leaves it to msgrun worker with --detach).",
    )
    parser.add_argument("run")
    settled = ", ".join(SETTLED)
    parser.add_argument("--state", help=f"choose these settled states, comma-separated ({settled})")
    outcomes = ", ".join(export_rows.OUTCOME_FILTERS)
    parser.add_argument("--outcome", help=f"choose these outcomes, comma-separated ({outcomes})")
    parser.add_argument("--at", help="plan for this instant (ISO 8601 with offset; default now)")
    parser.add_argument("--detach", action="store_true", help="only create it, for msgrun worker")
    parser.set_defaults(handler=run_follow_up)


def run_follow_up(args: argparse.Namespace) -> int:
    try:
        chosen = export_rows.selection(args.state, args.outcome)
    except export_rows.BadFilter as error:
        raise UsageError(str(error)) from None
    at = sending_instant(args.at, "A follow-up is planned now or later.")
    db = database(args.db)
    run = existing_run(db, args.run)
    try:
        new_id = start_follow_up(db, run.id, chosen, at, SystemClock())
    except (NotSettled, NothingChosen, PlanningError) as error:
        raise UsageError(str(error)) from None
    except FollowUpRefused as error:
        raise OperationFailed(str(error)) from None
    print(new_id, flush=True)
    created = get_run(db, new_id)
    print(f"run {new_id} follows up run {run.id}: {summary(created)}", file=sys.stderr)
    if args.detach:
        if created.state == RUNNING:
            print(f"run {new_id}: msgrun worker{db_option(args.db)} delivers it", file=sys.stderr)
        return 0
    if created.state != RUNNING:
        return 0
    return foreground(db, new_id, db_flag=args.db)
