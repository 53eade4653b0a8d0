"""The command line's "next:" lines after a run command: ``core.views.run_actions``'s
next steps, in words (the console offers the same answers as keys)."""

from __future__ import annotations

import shlex
from datetime import datetime

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from core.clock import format_instant
from core.run_info import RunInfo
from core.views.run_actions import NextStep, Step, next_steps


def db_option(url: str | None) -> str:
    """`` --db URL`` for the commands a line suggests, when the command was given one
    (else they find the same database as it did); a password in it is masked (in the
    URL) or left out (a query parameter)."""
    if not url:
        return ""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f" --db {shlex.quote(url)}"
    if "password" in parsed.query:  # a password may come as a query parameter: left out
        parsed = parsed.difference_update_query(["password"])
    shown = parsed.render_as_string(hide_password=True)
    return f" --db {shlex.quote(shown)}"


def step_line(step: NextStep, db: str | None = None) -> str:
    """One next step, as ``run start``, ``run restart`` and ``run show`` print it;
    ``db``: the ``--db`` the command was given, which the suggested commands repeat."""
    run_id, n = step.run_id, step.count
    on = db_option(db)
    match step.step:
        case Step.RESTART_INTERRUPTED:
            return (
                f"next: msgrun run restart {run_id}{on} delivers what was not sent (a msgrun "
                f"worker{on} takes it up too); msgrun run stop {run_id}{on} ends it stopped"
            )
        case Step.RESTART:
            return f"next: msgrun run restart {run_id}{on} sends what was not sent"
        case Step.WHEN_DUE:
            when = (
                f"; the next is due at {format_instant(step.due)}"
                if step.due is not None
                else " when they are due"
            )
            return (
                f"next: msgrun worker{on} (or msgrun run restart {run_id}{on}) delivers the "
                f"{n} still to send{when}"
            )
        case Step.RESEND_UNKNOWN:
            taken = (
                f" ({step.handed_on} more handed on to a follow-up, which sends them)"
                if step.handed_on
                else ""
            )
            return (
                f"next: {n} unknown may or may not have reached the server{taken}; "
                f"msgrun run restart {run_id} --resend-unknown{on} sends them again "
                f"(msgrun run show {run_id} --state unknown{on} lists them)"
            )
        case Step.LIST_FAILED:
            return (
                f"next: msgrun run show {run_id} --state failed{on} lists the {n} failed "
                "and why each failed"
            )


def next_step_lines(
    run: RunInfo,
    *,
    next_due: datetime | None = None,
    handed_on: int = 0,
    interrupted: bool = False,
    db: str | None = None,
) -> list[str]:
    """What to do next with a run that ended short of ``completed``, one line a step
    (``db``: the ``--db`` the command was given)."""
    steps = next_steps(run, next_due=next_due, handed_on=handed_on, interrupted=interrupted)
    return [step_line(step, db) for step in steps]
