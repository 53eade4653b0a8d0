"""Run and recipient states (domain.md, "Runs and recipients"), and the table of
the transitions allowed between them.

The states are ``StrEnum``s, so the strings stored in the database are the
members' values and compare equal to them. The tables below are the whole
state machine: ``transitions.py`` is the only module that writes a state
column, and it refuses any move that is not listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class RecipientState(StrEnum):
    PENDING = "pending"
    HELD = "held"
    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    UNKNOWN = "unknown"
    EXCLUDED = "excluded"


class RunState(StrEnum):
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    WAITING = "waiting"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    FAILED = "failed"


# Recipients (the names the rest of the code has always used).
PENDING: Final = RecipientState.PENDING
HELD: Final = RecipientState.HELD
SENDING: Final = RecipientState.SENDING
SENT: Final = RecipientState.SENT
RETRYING: Final = RecipientState.RETRYING
FAILED: Final = RecipientState.FAILED
UNKNOWN: Final = RecipientState.UNKNOWN
EXCLUDED: Final = RecipientState.EXCLUDED
RECIPIENT_STATES: Final[tuple[str, ...]] = tuple(RecipientState)

# Recipient states in groups, each named for the question the code asks of it.
# Left to send, without anyone's say: waiting for its turn, its quiet hours or its next attempt.
LEFT_TO_SEND: Final = (PENDING, HELD, RETRYING)
# No outcome yet: left to send, or in the hands of a connection now.
UNSETTLED: Final = (PENDING, HELD, RETRYING, SENDING)
# An attempt settled it: sent, failed, or unknown (it may have been sent); a run's "done".
DONE: Final = (SENT, FAILED, UNKNOWN)
# Not tried again unless the operator says so: done, or excluded (a follow-up takes these).
SETTLED: Final = (FAILED, UNKNOWN, SENT, EXCLUDED)
# Its message reached a server, or may have: a bounce or complaint report can be about it.
MAY_HAVE_ARRIVED: Final = (SENT, UNKNOWN)
# Its run holds its message for it: to be sent, being sent, or maybe sent (rule 18's "holds").
HOLDS_ITS_MESSAGE: Final = (PENDING, HELD, SENDING, RETRYING, UNKNOWN)
# It keeps the never-twice key it took when it was marked sending: sent, being sent, to be
# tried again, or maybe sent (pending and held ones take their key only when marked).
KEEPS_ITS_KEY: Final = (SENT, SENDING, RETRYING, UNKNOWN)

# Runs.
RUNNING: Final = RunState.RUNNING
STOPPING: Final = RunState.STOPPING
STOPPED: Final = RunState.STOPPED
WAITING: Final = RunState.WAITING
COMPLETED: Final = RunState.COMPLETED
COMPLETED_WITH_FAILURES: Final = RunState.COMPLETED_WITH_FAILURES
RUN_FAILED: Final = RunState.FAILED
RUN_STATES: Final[tuple[str, ...]] = tuple(RunState)
# Run states in groups, each named for the question the code asks of it.
# States a run can be restarted from (a completed run has nothing left).
RESTARTABLE: Final = (STOPPED, RUN_FAILED, WAITING, COMPLETED_WITH_FAILURES, RUNNING, STOPPING)
# It has ended: stopped, completed or failed; nothing delivers it unless restarted (a
# waiting run has not ended: a worker takes it up when its next recipient is due).
ENDED: Final = (STOPPED, COMPLETED, COMPLETED_WITH_FAILURES, RUN_FAILED)
# A process delivers it, or should (an interrupted run): running, or stopping (it finishes
# what it has in hand first).
BEING_DELIVERED: Final = (RUNNING, STOPPING)

R = RecipientState
# Every recipient transition, named: (the state it leaves, the state it enters) → name.
# A recipient enters the run's snapshot in `pending`, `held` or `excluded`
# (starting.snapshot_plan inserts it); from then on it moves only along these.
RECIPIENT_TRANSITIONS: Final[Mapping[tuple[RecipientState, RecipientState], str]] = {
    # Marked just before it is handed to a connection (an attempt is counted).
    (R.PENDING, R.SENDING): "mark_sending",
    (R.HELD, R.SENDING): "mark_sending",
    (R.RETRYING, R.SENDING): "mark_sending",
    # Set aside at that moment: its quiet hours are in force now …
    (R.PENDING, R.HELD): "hold_for_quiet_hours",
    (R.HELD, R.HELD): "hold_for_quiet_hours",
    (R.RETRYING, R.HELD): "hold_for_quiet_hours",
    # … or another run has sent, or is sending, its document to its address.
    (R.PENDING, R.EXCLUDED): "exclude_taken_elsewhere",
    (R.HELD, R.EXCLUDED): "exclude_taken_elsewhere",
    (R.RETRYING, R.EXCLUDED): "exclude_taken_elsewhere",
    # Marked, but never handed to a connection (a stop, a fault of the profile).
    (R.SENDING, R.PENDING): "give_back_unsent",
    # Handed to a connection, but its quiet hours began before it went on the wire.
    (R.SENDING, R.HELD): "hold_at_the_wire",
    # The server's reply, recorded.
    (R.SENDING, R.SENT): "record_sent",
    (R.SENDING, R.RETRYING): "record_retrying",
    (R.SENDING, R.FAILED): "record_failed",
    # The process sending it is gone: it may or may not have reached the server.
    (R.SENDING, R.UNKNOWN): "make_unknown",
    # The operator's explicit choice (run restart --resend-unknown).
    (R.UNKNOWN, R.PENDING): "resend_unknown",
    # A bounce or complaint report proves that the message reached a server.
    (R.UNKNOWN, R.SENT): "proved_sent_by_report",
}

S = RunState
# Every run transition, by name: (the states it may leave, the state it enters).
RUN_TRANSITIONS: Final[Mapping[str, tuple[frozenset[RunState], RunState]]] = {
    # `run start`/`run restart` (and a follow-up) deliver it, whatever it was;
    # the stop request is cleared.
    "restart": (frozenset(RunState), S.RUNNING),
    # A worker takes up a run that is running or waiting (never a stopped one).
    "resume": (frozenset({S.RUNNING, S.WAITING}), S.RUNNING),
    # Asked to stop while a process delivers it: that process finishes.
    "request_stop": (frozenset({S.RUNNING, S.WAITING, S.STOPPING}), S.STOPPING),
    # Asked to stop while nobody delivers it: stopped at once.
    "stop_undelivered": (frozenset({S.RUNNING, S.WAITING, S.STOPPING}), S.STOPPED),
    # The delivering process honoured the stop.
    "stop": (frozenset({S.RUNNING, S.STOPPING, S.WAITING}), S.STOPPED),
    # Nobody delivers a stopping run any more (the last process left it).
    "finish_stopping": (frozenset({S.STOPPING}), S.STOPPED),
    # Nothing left to do now: settled (see policy.settled_state).
    "complete": (frozenset({S.RUNNING, S.STOPPING, S.WAITING}), S.COMPLETED),
    "complete_with_failures": (
        frozenset({S.RUNNING, S.STOPPING, S.WAITING}),
        S.COMPLETED_WITH_FAILURES,
    ),
    "wait": (frozenset({S.RUNNING, S.STOPPING, S.WAITING}), S.WAITING),
    # A fault of the profile (AUTH refused, …) ends the run.
    "fail": (frozenset({S.RUNNING, S.STOPPING, S.WAITING}), S.FAILED),
    # A report proved its last `unknown` recipient sent.
    "complete_by_report": (frozenset({S.COMPLETED_WITH_FAILURES}), S.COMPLETED),
    # A run (or follow-up) whose every candidate came out excluded ends as it is made.
    "complete_empty": (frozenset({S.RUNNING}), S.COMPLETED),
}
# The run transition that settles a run in each state.
SETTLE: Final[Mapping[RunState, str]] = {
    S.COMPLETED: "complete",
    S.COMPLETED_WITH_FAILURES: "complete_with_failures",
    S.WAITING: "wait",
    S.FAILED: "fail",
    S.STOPPED: "stop",
}

# Retries: the profile's schedule, see retry_policy.py.

# Leases: renewed every few seconds (their length: core.settings.lease_seconds).
LEASE_RENEW_SECONDS: Final = 3.0
