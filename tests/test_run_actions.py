"""What a run's state offers, decided once (core.views.run_actions): the console's keys
and the command line's next steps give the same answers."""

from __future__ import annotations

from datetime import UTC, datetime

from core.delivery.holding import NOBODY, Holder, Holding
from core.run_info import RunInfo
from core.states import RECIPIENT_STATES
from core.views.run_actions import (
    NextStep,
    RunAction,
    Step,
    next_steps,
    offered,
    restart_offered_in_list,
    unknown_to_resend,
)
from core.views.runs import RunProgress
from tui.next_steps import next_step_lines

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LIVE = Holding((Holder("ops-1", 4242, True),))
GONE = Holding((Holder("ops-1", 4242, False),), interrupted=True)


def a_run(state: str, **counts: int) -> RunInfo:
    return RunInfo(
        id=7,
        definition_id="invoice-email",
        smtp_profile_id="main",
        state=state,
        planned_at=AT,
        created_at=AT,
        started_by="ops@console",
        ended_at=None,
        stop_requested_at=None,
        stop_requested_by=None,
        error=None,
        lease_owner=None,
        lease_expires_at=None,
        counts={**dict.fromkeys(RECIPIENT_STATES, 0), **counts},
    )


def progress(run: RunInfo, holding: Holding = NOBODY) -> RunProgress:
    return RunProgress(run, deliverable=run.total, done=0, holding=holding)


def test_a_running_run_delivered_now_offers_stop_and_nothing_a_live_run_cannot_take() -> None:
    run = a_run("running", pending=3, sent=1)
    assert offered(progress(run, LIVE)) == {RunAction.STOP}
    assert next_steps(run) == []  # under way: nothing to do next yet


def test_an_interrupted_run_offers_a_restart_in_the_list_and_says_so_next() -> None:
    run = a_run("running", pending=3, held=1)
    assert offered(progress(run, GONE)) == {RunAction.STOP, RunAction.RESTART}
    assert restart_offered_in_list(progress(run, GONE))
    assert not restart_offered_in_list(progress(run, LIVE))
    steps = next_steps(run, interrupted=True)
    assert [s.step for s in steps] == [Step.RESTART_INTERRUPTED, Step.WHEN_DUE]
    assert steps[1].count == 1


def test_a_stopped_run_with_recipients_left_offers_a_restart_and_a_follow_up() -> None:
    run = a_run("stopped", pending=2, sent=1, failed=1)
    assert offered(progress(run)) == {
        RunAction.RESTART,
        RunAction.FOLLOW_UP,
    }
    assert next_steps(run) == [
        NextStep(Step.RESTART, 7, 2),
        NextStep(Step.LIST_FAILED, 7, 1),
    ]


def test_unknown_recipients_a_follow_up_took_are_not_offered_again() -> None:
    run = a_run("completed_with_failures", unknown=3, sent=2)
    assert RunAction.RESEND_UNKNOWN in offered(progress(run))
    assert unknown_to_resend(run, handed_on=3) == 0
    assert next_steps(run, handed_on=3) == []
    (line,) = next_step_lines(run, handed_on=1)
    assert line.startswith("next: 2 unknown may or may not have reached the server (1 more ")


def test_a_completed_run_offers_a_follow_up_only_and_has_no_next_step() -> None:
    run = a_run("completed", sent=3)
    assert offered(progress(run)) == {RunAction.FOLLOW_UP}
    assert next_steps(run) == []


def test_a_waiting_run_says_when_the_next_is_due() -> None:
    run = a_run("waiting", retrying=2, sent=1)
    (line,) = next_step_lines(run, next_due=AT)
    assert line.startswith("next: msgrun worker (or msgrun run restart 7) delivers the 2 still")
    assert "the next is due at" in line


def test_next_steps_repeat_the_database_the_command_was_given_its_password_masked() -> None:
    """A run shown with --db: the commands it suggests work on that database too (the
    default database is elsewhere), and a password never reaches the terminal."""
    run = a_run("stopped", pending=2, failed=1)
    assert next_step_lines(run, db="sqlite:////srv/billing/msgrun.db") == [
        "next: msgrun run restart 7 --db sqlite:////srv/billing/msgrun.db sends what was not sent",
        "next: msgrun run show 7 --state failed --db sqlite:////srv/billing/msgrun.db lists the "
        "1 failed and why each failed",
    ]
    (restart, _) = next_step_lines(run, db="postgresql+psycopg://ops:s3cret@db.lan/billing")
    assert "s3cret" not in restart
    assert "--db 'postgresql+psycopg://ops:***@db.lan/billing'" in restart
    (restart, _) = next_step_lines(
        run, db="postgresql+psycopg://ops@db.lan/billing?password=s3cret"
    )
    assert "s3cret" not in restart and "--db postgresql+psycopg://ops@db.lan/billing " in restart
    assert next_step_lines(run)[0] == "next: msgrun run restart 7 sends what was not sent"
