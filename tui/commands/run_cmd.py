"""``msgrun run start|stop|restart|show|list`` and ``msgrun worker``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from functools import partial
from itertools import chain

from core.bounces.store import ReadSummary
from core.clock import SystemClock, format_instant
from core.delivery.deliver import Delivery
from core.delivery.holding import Holding, holdings
from core.delivery.starting import create_run, request_stop, unknown_handed_on
from core.planner.load import PlanningError
from core.run_info import RunInfo, get_run, list_runs
from core.states import (
    COMPLETED,
    EXCLUDED,
    FAILED,
    RECIPIENT_STATES,
    SENT,
    STOPPED,
    UNKNOWN,
)
from core.storage import Database
from core.storage.database import error_words
from core.views.deliveries import run_deliveries
from core.views.export_rows import OUTCOME_FILTERS, BadFilter, parse_list
from core.views.runs import left_to_send, restart_check, run_show_json_text
from core.worker import WorkerRefused, work
from tui import event_loop
from tui.commands import export_cmd, follow_up_cmd
from tui.commands.common import database, existing_run
from tui.commands.foreground import (
    foreground,
    graceful_stop,
    sending_instant,
    summary,
)
from tui.delivery_text import recipient_line
from tui.errors import OperationFailed, UsageError
from tui.next_steps import db_option, next_step_lines
from tui.output import write_out


def add_parsers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    run = commands.add_parser("run", help="start, stop, restart and inspect message runs")
    actions = run.add_subparsers(dest="run_command", metavar="ACTION", required=True)

    start = actions.add_parser(
        "start",
        parents=[common],
        help="create a run of a definition and deliver it here",
        description="Plan the definition, snapshot the plan as a run, print the run id, and "
        "deliver it in this process (Ctrl-C stops it gracefully).",
    )
    start.add_argument("definition")
    start.add_argument("--at", help="plan for this instant (ISO 8601 with offset; default now)")
    start.add_argument("--detach", action="store_true", help="only create it, for msgrun worker")
    start.set_defaults(handler=run_start)

    stop = actions.add_parser("stop", parents=[common], help="ask a run to stop (from any process)")
    stop.add_argument("run")
    stop.set_defaults(handler=run_stop)

    restart = actions.add_parser(
        "restart",
        parents=[common],
        help="deliver what a run has not sent",
        description="Deliver what the run has not sent: pending, due retries, due held. "
        "Never sends a sent recipient again; `unknown` ones only with --resend-unknown.",
    )
    restart.add_argument("run")
    restart.add_argument(
        "--resend-unknown",
        action="store_true",
        help="also send recipients whose earlier send may or may not have reached the server",
    )
    restart.add_argument("--detach", action="store_true", help="leave it to msgrun worker")
    restart.set_defaults(handler=run_restart)

    show = actions.add_parser("show", parents=[common], help="a run's state and counts")
    show.add_argument("run")
    show.add_argument("--json", action="store_true", help="one JSON object, every recipient in it")
    show.add_argument(
        "--state",
        type=recipient_states,
        metavar="STATE[,STATE…]",
        help="list the recipients in these states with their SMTP replies "
        "(with --json: only those recipients); e.g. failed,unknown",
    )
    show.add_argument(
        "--outcome",
        type=recipient_outcomes,
        metavar="OUTCOME[,OUTCOME…]",
        help="list the recipients with these outcomes of reports, as the export chooses "
        f"({', '.join(OUTCOME_FILTERS)}); with --state, those in either",
    )
    show.set_defaults(handler=run_show)

    export_cmd.add_parser(actions, common)
    follow_up_cmd.add_parser(actions, common)

    listing = actions.add_parser("list", parents=[common], help="the newest runs")
    listing.add_argument(
        "--limit", type=at_least_one, default=50, help="the newest N runs (default 50)"
    )
    listing.set_defaults(handler=run_list)

    worker = commands.add_parser(
        "worker", parents=[common], help="deliver runs from the database until SIGINT/SIGTERM"
    )
    worker.set_defaults(handler=run_worker)


def recipient_states(text: str) -> list[str]:
    """argparse type: a comma-separated list of recipient states."""
    states = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [state for state in states if state not in RECIPIENT_STATES]
    if wrong or not states:
        raise argparse.ArgumentTypeError(
            f"{', '.join(map(repr, wrong)) or repr(text)}: not a recipient state "
            f"(one or more of: {', '.join(RECIPIENT_STATES)}, separated by commas)"
        )
    return states


def recipient_outcomes(text: str) -> list[str]:
    """argparse type: a comma-separated list of outcomes (``bounce``, ``complaint`` …)."""
    try:
        return list(parse_list(text, OUTCOME_FILTERS, "outcome"))
    except BadFilter as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_start(args: argparse.Namespace) -> int:
    at = sending_instant(
        args.at,
        f"To see what would have been decided: msgrun plan {args.definition} --at {args.at}",
    )
    db = database(args.db)
    try:
        run_id = create_run(db, args.definition, at, SystemClock())
    except PlanningError as error:
        raise UsageError(str(error)) from None
    print(run_id, flush=True)
    if args.detach:
        run = get_run(db, run_id)
        print(
            f"run {run_id} created: {summary(run)}; "
            + (
                f"msgrun worker{db_option(args.db)} delivers it"
                if left_to_send(run.counts)
                else "nothing to send"
            ),
            file=sys.stderr,
        )
        return 0
    run = get_run(db, run_id)
    if run.state == COMPLETED:
        # Every candidate was excluded: nothing to deliver, no connection to open.
        print(f"run {run_id} completed: {summary(run)}; nothing to send", file=sys.stderr)
        return 0
    return foreground(db, run_id, db_flag=args.db)


def run_stop(args: argparse.Namespace) -> int:
    db = database(args.db)
    run = existing_run(db, args.run)
    outcome = request_stop(db, run.id, SystemClock())
    if not outcome.recorded:
        print(f"run {run.id} had already ended ({run.state}); nothing to stop")
    elif outcome.run.state == STOPPED:
        print(f"run {run.id} stopped (no process was delivering it): {summary(outcome.run)}")
    else:
        print(
            f"run {run.id}: stop recorded; the delivering process stops once the messages "
            "in flight are done"
        )
    return 0


def run_restart(args: argparse.Namespace) -> int:
    db = database(args.db)
    run = existing_run(db, args.run)
    check = restart_check(run.id, run.state)
    if check.nothing_left:
        print(run.id, flush=True)
        print(check.why, file=sys.stderr)
        return 0
    if not check.allowed:
        raise UsageError(check.why)
    clock = SystemClock()
    if run.lease_live(clock.now()) and lapse_dead_here_now(db, run.id, clock):
        # Its process, of this machine, is gone (kill -9): no need to wait for its lease.
        run = existing_run(db, args.run)
    if run.lease_live(clock.now()):
        until = format_instant(run.lease_expires_at) if run.lease_expires_at else "?"
        raise OperationFailed(
            f"run {run.id} is being delivered by {run.lease_owner} (lease until {until}); "
            "a restart must wait until that process ends or its lease lapses"
        )
    print(run.id, flush=True)
    if args.detach:
        from core.delivery.restart import mark_for_workers

        mark_for_workers(db, run.id, clock, resend_unknown=args.resend_unknown)
        print(f"run {run.id} is queued for msgrun worker{db_option(args.db)}", file=sys.stderr)
        return 0
    return foreground(db, run.id, resend_unknown=args.resend_unknown, db_flag=args.db)


def lapse_dead_here_now(db: Database, run_id: int, clock: SystemClock) -> bool:
    from core.delivery.registry import lapse_dead_here

    with db.connect() as connection:
        return lapse_dead_here(connection, run_id, clock.now())


def holding_of(db: Database, runs: list[RunInfo]) -> dict[int, Holding]:
    """Who delivers each run now, and which are interrupted (``core.delivery.holding``)."""
    with db.connect() as connection:
        return holdings(connection, runs, SystemClock().now())


def shown_state(run: RunInfo, held: Holding) -> str:
    """``running``, or ``running (interrupted)`` when nobody delivers it any more."""
    return f"{run.state} (interrupted)" if held.interrupted else run.state


def interrupted_line(held: Holding) -> str:
    """What an interrupted run's ``run show`` says: that, and who left it (what to do is
    its first next step)."""
    who = ", ".join(holder.words() for holder in held.held_by)
    left = f" (it was delivered by {who}, which no longer does)" if who else ""
    return f"interrupted: no process delivers this run any more{left}"


def run_show(args: argparse.Namespace) -> int:
    db = database(args.db)
    run = existing_run(db, args.run)
    if args.json:
        write_out(run_show_json_text(db, run.id, args.state, args.outcome))
        return 0
    held = holding_of(db, [run])[run.id]
    lines = [
        f"run {run.id} · {run.definition_id} · {shown_state(run, held)}",
        f"planned for {format_instant(run.planned_at)} · created {format_instant(run.created_at)} "
        f"by {run.started_by}",
    ]
    if run.follow_up_of is not None:
        lines.append(f"follows up run {run.follow_up_of}")
    if run.ended_at:
        lines.append(f"ended {format_instant(run.ended_at)}")
    if run.stop_requested_by:
        lines.append(f"stop requested by {run.stop_requested_by}")
    if held.live:
        lines.append(f"being delivered by {', '.join(h.words() for h in held.live)}")
    if held.interrupted:
        lines.append(interrupted_line(held))
    if run.error:
        lines.append(f"error: {run.error}")
    lines.append("")
    width = max(len(s) for s in RECIPIENT_STATES)
    lines += [f"  {s:<{width}}  {run.counts[s]:>8}" for s in RECIPIENT_STATES]
    lines.append(f"  {'total':<{width}}  {run.total:>8}")
    handed_on = unknown_handed_on(db, run.id) if run.counts[UNKNOWN] else 0
    steps = next_step_lines(run, handed_on=handed_on, interrupted=held.interrupted, db=args.db)
    tail = ["", *steps] if steps else []
    if not (args.state or args.outcome):
        write_out("\n".join([*lines, *tail]))
        return 0
    # The chosen recipients (a million, maybe) wait in a temporary file, not in memory,
    # while they are counted: the count comes first.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as listed:
        count = 0
        with db.connect() as connection:
            for delivery in run_deliveries(connection, run.id, args.state, args.outcome):
                count += 1
                for text in recipient_line(delivery):
                    listed.write(f"\n{text}")
        named = [*(args.state or ()), *(args.outcome or ())]
        lines += ["", f"{count} {' or '.join(named)}:"]
        listed.seek(0)
        pieces = iter(partial(listed.read, 1 << 16), "")
        write_out(chain(["\n".join(lines)], pieces, ["".join(f"\n{text}" for text in tail)]))
    return 0


def at_least_one(text: str) -> int:
    """argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


def run_list(args: argparse.Namespace) -> int:
    db = database(args.db)
    runs = list_runs(db, args.limit)
    if not runs:
        write_out("no runs yet (msgrun run start DEFINITION)")
        return 0
    header = ("RUN", "DEFINITION", "STATE", "CREATED", "SENT", "TO SEND", "FAILED", "UNKNOWN")
    rows = [(*header, "EXCLUDED")]
    held = holding_of(db, runs)
    for r in runs:
        rows.append(
            (
                str(r.id),
                r.definition_id
                + (f" (follows {r.follow_up_of})" if r.follow_up_of is not None else ""),
                shown_state(r, held[r.id]),
                format_instant(r.created_at),
                str(r.counts[SENT]),
                str(left_to_send(r.counts)),
                str(r.counts[FAILED]),
                str(r.counts[UNKNOWN]),
                str(r.counts[EXCLUDED]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    write_out(
        "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        )
    )
    return 0


def run_worker(args: argparse.Namespace) -> int:
    db = database(args.db)
    clock = SystemClock()

    def said(delivery: Delivery) -> None:
        print(
            f"run {delivery.run_id}: {delivery.state}, {delivery.sent} sent"
            + (f" ({delivery.error})" if delivery.error else ""),
            file=sys.stderr,
            flush=True,
        )

    def failed(run_id: int | None, error: BaseException) -> None:
        if run_id is None:
            print(f"database: {error_words(error)} (trying again)", file=sys.stderr, flush=True)
        else:
            print(
                f"run {run_id}: {error_words(error)} (taken up again shortly)",
                file=sys.stderr,
                flush=True,
            )

    def bounces_read(summary: ReadSummary) -> None:
        if summary.read:
            print(f"bounces: {summary.line()}", file=sys.stderr, flush=True)

    def bounces_failed(error: BaseException) -> None:
        print(
            f"bounces: {error_words(error)} (MSGRUN_BOUNCE_SOURCES; read again in a minute)",
            file=sys.stderr,
            flush=True,
        )

    async def main() -> None:
        stop = asyncio.Event()
        with graceful_stop(
            asyncio.get_running_loop(), stop, lambda text: print(text, file=sys.stderr, flush=True)
        ):
            await work(
                db,
                clock,
                stop,
                on_delivery=said,
                on_error=failed,
                on_bounces=bounces_read,
                on_bounce_error=bounces_failed,
            )

    print(
        f"msgrun worker delivering runs from {db.describe()} (Ctrl-C or SIGTERM to stop)",
        file=sys.stderr,
        flush=True,
    )
    try:
        event_loop.run(main())
    except WorkerRefused as refused:
        raise UsageError(str(refused)) from None
    print("msgrun worker stopped", file=sys.stderr)
    return 0
