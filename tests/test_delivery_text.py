"""How a recipient's attempts read in the console's recipient view and in `run show`."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from core.views.deliveries import Attempt, Delivery
from tui.delivery_text import attempt_lines

AT = datetime(2026, 12, 4, 18, 49, tzinfo=UTC)


def delivery(**values: Any) -> Delivery:
    known: dict[str, Any] = {f.name: None for f in fields(Delivery)}
    known.update(
        recipient_id=1,
        run_id=1,
        definition_id="inv",
        position=0,
        customer_id="C001",
        decision="included",
        reasons=[],
        attempt_log=[],
        timezone="UTC",
        outcomes=[],
        attachments=[],
    )
    known.update(values)
    return Delivery(**known)


GREYLISTED = Attempt(AT, 450, "4.2.0 Greylisted, try again later", False)


def test_the_attempt_under_way_is_said_to_be_under_way_not_lost() -> None:
    """Being sent for the second time: one attempt kept, one under way — not "an earlier
    attempt made before msgrun kept every attempt"."""
    lines = attempt_lines(delivery(state="sending", attempts=2, attempt_log=[GREYLISTED]), "  ")
    assert lines == [
        "  1. 2026-12-04 18:49:00  450 4.2.0 Greylisted, try again later",
        "  2. under way",
    ]


def test_attempts_from_before_every_attempt_was_kept_are_counted() -> None:
    lines = attempt_lines(delivery(state="retrying", attempts=3, attempt_log=[GREYLISTED]), "")
    assert lines[-1] == "(2 earlier attempt(s) made before msgrun kept every attempt)"
