"""Confirm, create a run, open its screen: the one way the console starts a run
(a plan's ``s``, a routine's ``r``, a run's follow-up ``F``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tui.console import places
from tui.console.confirm import Confirm
from tui.console.live import LiveScreen


def start_run_and_open(
    screen: LiveScreen[Any],
    question: Confirm,
    create: Callable[[], int],
    *,
    failure: str,
    replace: bool = False,
    notice: Callable[[int], str] | None = None,
) -> None:
    """Ask ``question``; once answered yes, ``create`` the run in a worker thread (it
    returns the new run's id, having had it delivered), then open the run's screen.

    The run's screen opens over ``screen`` (``replace``: instead of it) while
    ``screen`` is still the one shown; an operator who went elsewhere meanwhile is
    not taken away: a notice says what was started.
    """
    console = screen.console

    def started(run_id: int) -> None:
        if notice is not None:
            screen.notify(notice(run_id))
        if screen.is_current:
            console.visit(places.Run(run_id), replace=replace)
        elif notice is None:
            screen.notify(f"run {run_id} started")

    def answered(yes: bool | None) -> None:
        if yes:
            console.perform(create, started, failure=failure)

    screen.app.push_screen(question, answered)
