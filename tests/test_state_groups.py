"""The named groups of states (core/states.py) say what their names say."""

from __future__ import annotations

from core.states import (
    BEING_DELIVERED,
    DONE,
    ENDED,
    EXCLUDED,
    HOLDS_ITS_MESSAGE,
    KEEPS_ITS_KEY,
    LEFT_TO_SEND,
    MAY_HAVE_ARRIVED,
    RESTARTABLE,
    SENDING,
    SENT,
    SETTLED,
    UNKNOWN,
    UNSETTLED,
    WAITING,
    RecipientState,
    RunState,
)


def test_every_recipient_is_settled_or_not_and_never_both() -> None:
    assert set(SETTLED) | set(UNSETTLED) == set(RecipientState)
    assert not set(SETTLED) & set(UNSETTLED)


def test_settled_is_done_or_excluded_and_unsettled_is_left_to_send_or_sending() -> None:
    assert set(SETTLED) == {*DONE, EXCLUDED}
    assert set(UNSETTLED) == {*LEFT_TO_SEND, SENDING}


def test_what_holds_its_message_may_still_go_or_may_have_gone() -> None:
    assert set(HOLDS_ITS_MESSAGE) == {*UNSETTLED, UNKNOWN}
    assert set(MAY_HAVE_ARRIVED) == {SENT, UNKNOWN}
    # A key is taken when a recipient is marked sending (pending and held ones have none
    # yet) and let go when it fails: what keeps one is what has gone or may go again.
    assert not set(KEEPS_ITS_KEY) & {RecipientState.PENDING, RecipientState.HELD}
    assert set(KEEPS_ITS_KEY) == {*MAY_HAVE_ARRIVED, SENDING, RecipientState.RETRYING}


def test_a_run_is_ended_being_delivered_or_waiting() -> None:
    assert set(ENDED) | set(BEING_DELIVERED) | {WAITING} == set(RunState)
    assert not set(ENDED) & set(BEING_DELIVERED)
    # Only a completed run cannot be restarted: it has nothing left.
    assert set(RunState) - set(RESTARTABLE) == {RunState.COMPLETED}


def test_the_groups_hold_no_state_twice() -> None:
    groups = (LEFT_TO_SEND, UNSETTLED, DONE, SETTLED, MAY_HAVE_ARRIVED, HOLDS_ITS_MESSAGE)
    for group in (*groups, KEEPS_ITS_KEY, ENDED, BEING_DELIVERED, RESTARTABLE):
        assert len(set(group)) == len(group)
