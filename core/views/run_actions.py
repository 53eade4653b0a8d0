"""What can be done with a run now, decided once from its read model.

The console offers a run's keys by these answers (stop, restart, re-send
unknown, follow up), and the command line's "next:" steps after ``run
start``/``restart``/``show`` are the same answers in words (``tui/next_steps.py``
says them). Pure functions of ``RunInfo``/``RunProgress``: no database here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.run_info import RunInfo
from core.states import (
    BEING_DELIVERED,
    ENDED,
    FAILED,
    HELD,
    RETRYING,
    RUN_FAILED,
    STOPPED,
    UNKNOWN,
    UNSETTLED,
)
from core.views.runs import RunProgress, restart_check


class RunAction(StrEnum):
    """An action on a run whose state decides whether it is offered."""

    STOP = "stop"
    RESTART = "restart"
    RESEND_UNKNOWN = "resend_unknown"
    FOLLOW_UP = "follow_up"


def unsent(run: RunInfo) -> int:
    """Recipients not sent yet that a restart would take up."""
    return sum(run.counts.get(state, 0) for state in UNSETTLED)


def can_stop(run: RunInfo) -> bool:
    return run.state not in ENDED


def can_restart(progress: RunProgress) -> bool:
    """Something to send, a state it can be restarted from, and no live process
    delivering it (an interrupted run above all)."""
    run = progress.run
    return (
        unsent(run) > 0 and restart_check(run.id, run.state).allowed and not progress.delivered_now
    )


def unknown_to_resend(run: RunInfo, handed_on: int = 0) -> int:
    """`unknown` recipients ``--resend-unknown`` would send (less those a follow-up took)."""
    return max(0, run.counts.get(UNKNOWN, 0) - handed_on)


def can_follow_up(run: RunInfo) -> bool:
    """A follow-up is made of an ended (or waiting) run, never of one under way."""
    return run.state not in BEING_DELIVERED


def offered(progress: RunProgress) -> frozenset[RunAction]:
    """The run's actions that its state allows now (the run screen's footer shows those)."""
    run = progress.run
    can = {
        RunAction.STOP: can_stop(run),
        RunAction.RESTART: can_restart(progress),
        RunAction.RESEND_UNKNOWN: unknown_to_resend(run) > 0,
        RunAction.FOLLOW_UP: can_follow_up(run),
    }
    return frozenset(action for action, yes in can.items() if yes)


def restart_offered_in_list(progress: RunProgress) -> bool:
    """The runs list offers a restart for an interrupted run only (the run's own
    screen offers the rest)."""
    return progress.interrupted


class Step(StrEnum):
    """A kind of next step, as the command line says it after a run command."""

    # Nobody delivers a running run any more: restart it, or stop it.
    RESTART_INTERRUPTED = "restart_interrupted"
    # Stopped or failed with recipients left to send.
    RESTART = "restart"
    # Retrying or held recipients: a worker (or a restart) sends them when due.
    WHEN_DUE = "when_due"
    # `unknown` ones: maybe sent; --resend-unknown sends them again.
    RESEND_UNKNOWN = "resend_unknown"
    # Failed ones: list them and why each failed (a server's reply, or msgrun's reason).
    LIST_FAILED = "list_failed"


@dataclass(frozen=True)
class NextStep:
    step: Step
    run_id: int
    count: int = 0  # the recipients it is about
    handed_on: int = 0  # RESEND_UNKNOWN: those a follow-up took (and sends)
    due: datetime | None = None  # WHEN_DUE: when the next is due, if known


def next_steps(
    run: RunInfo,
    *,
    next_due: datetime | None = None,
    handed_on: int = 0,
    interrupted: bool = False,
) -> list[NextStep]:
    """What to do next with a run that ended short of ``completed`` (nothing when it is,
    and nothing while a process delivers it).

    ``next_due``: when the next held or retrying recipient is due, if known;
    ``handed_on``: how many of its `unknown` recipients a follow-up took (which
    ``--resend-unknown`` leaves to it); ``interrupted``: no process delivers it
    any more though it is running.
    """
    if run.state in BEING_DELIVERED and not interrupted:
        return []
    counts, steps = run.counts, []
    if interrupted:
        steps.append(NextStep(Step.RESTART_INTERRUPTED, run.id))
    waiting = counts.get(RETRYING, 0) + counts.get(HELD, 0)
    if run.state in (STOPPED, RUN_FAILED) and unsent(run):
        steps.append(NextStep(Step.RESTART, run.id, unsent(run)))
    elif waiting:
        steps.append(NextStep(Step.WHEN_DUE, run.id, waiting, due=next_due))
    left = unknown_to_resend(run, handed_on)
    if left:
        steps.append(NextStep(Step.RESEND_UNKNOWN, run.id, left, handed_on=handed_on))
    if counts.get(FAILED, 0):
        steps.append(NextStep(Step.LIST_FAILED, run.id, counts[FAILED]))
    return steps
