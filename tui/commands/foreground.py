"""Delivering a run in this process, as `run start`, `run restart`, `run follow-up` and the
demo do: a progress bar on stderr, Ctrl-C and SIGTERM stopping gracefully, and what to do
next once it ends."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.exc import DBAPIError

from core.clock import SystemClock, format_instant
from core.delivery.deliver import Delivery, DeliveryBroken, LeaseHeld, deliver
from core.delivery.starting import AT_TOLERANCE_SECONDS, unknown_handed_on
from core.run_info import RunInfo, get_run
from core.states import (
    COMPLETED,
    RECIPIENT_STATES,
    UNKNOWN,
    WAITING,
)
from core.storage import Database
from core.storage.database import error_words
from core.views.recipients import next_due_at
from tui import event_loop
from tui.commands.common import instant
from tui.errors import OperationFailed, UsageError
from tui.next_steps import db_option, next_step_lines
from tui.run_progress import RunProgress


@contextmanager
def graceful_stop(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, say: Callable[[str], None]
) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop gracefully: nothing new starts, what is in flight finishes."""

    def handler() -> None:
        if not stop.is_set():
            say("stopping: letting the messages in flight finish…")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def exit_code(delivery: Delivery) -> int:
    return 0 if delivery.state in (COMPLETED, WAITING) else 1


def foreground(
    db: Database, run_id: int, *, resend_unknown: bool = False, db_flag: str | None = None
) -> int:
    """Deliver in this process with a progress bar on stderr; the exit code of run start."""
    clock = SystemClock()
    total = get_run(db, run_id).total

    async def main() -> Delivery:
        stop = asyncio.Event()
        with (
            RunProgress(run_id, total) as progress,
            graceful_stop(asyncio.get_running_loop(), stop, progress.say),
        ):
            return await deliver(
                db,
                run_id,
                clock,
                stop=stop,
                on_progress=progress.update,
                resend_unknown=resend_unknown,
            )

    try:
        delivery = event_loop.run(main())
    except LeaseHeld as held:
        until = format_instant(held.until) if held.until else "unknown"
        raise OperationFailed(
            f"run {run_id} is being delivered by {held.owner} (its lease runs until {until}); "
            f"stop it with msgrun run stop {run_id}{db_option(db_flag)}, or wait for that process"
        ) from None
    except (DeliveryBroken, DBAPIError) as error:
        raise OperationFailed(
            f"run {run_id}: {error_words(error)}; what was not sent stays to send: "
            f"msgrun run restart {run_id}{db_option(db_flag)} takes it up again"
        ) from None
    run = get_run(db, run_id)
    print(f"run {run_id} {run.state}: {summary(run)}", file=sys.stderr)
    if run.error:
        print(f"  {run.error}", file=sys.stderr)
    due = next_due_at(db, run_id) if run.state == WAITING else None
    handed = unknown_handed_on(db, run_id) if run.counts[UNKNOWN] else 0
    for step in next_step_lines(run, next_due=due, handed_on=handed, db=db_flag):
        print(f"  {step}", file=sys.stderr)
    return exit_code(delivery)


def summary(run: RunInfo) -> str:
    return (
        ", ".join(f"{run.counts[s]} {s}" for s in RECIPIENT_STATES if run.counts[s])
        or "no recipients"
    )


def sending_instant(text: str | None, hint: str) -> datetime:
    """``--at`` of a run that sends: now, or a later instant; one in the past is refused
    (a run cannot send then), with ``hint`` saying how to see what would have been."""
    at = instant(text)
    now = SystemClock().now()
    if text is not None and (now - at).total_seconds() > AT_TOLERANCE_SECONDS:
        raise UsageError(
            f"--at {text} is in the past (now {format_instant(now)}): a run cannot send "
            f"then. {hint}"
        )
    return at
