"""Where a screen can take the operator: one small value per screen of the console.

A screen never imports another screen: it asks the console to ``visit`` a place,
and the navigator (``navigator.py``, at the top) makes the screen for it. So the
screens depend on this module and on ``context.py``, never on each other or on
the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Runs:
    """Every run, live (the console's first screen)."""


@dataclass(frozen=True)
class Run:
    """One run: progress, counts and its recipients."""

    run_id: int


@dataclass(frozen=True)
class RecipientMessage:
    """A run's recipient in full, and its message."""

    run_id: int
    position: int
    message_id: str | None


@dataclass(frozen=True)
class Customer:
    """A customer's drill-down; ``recipient`` the (run id, position) it was opened from."""

    customer_id: str | None = None
    definition: str | None = None
    at: datetime | None = None
    recipient: tuple[int, int] | None = None


@dataclass(frozen=True)
class Definitions:
    """Every message definition, to plan one."""


@dataclass(frozen=True)
class Plan:
    """A definition's plan at an instant (now when ``at`` is None)."""

    definition_id: str
    at: datetime | None = None


@dataclass(frozen=True)
class Profiles:
    """Every SMTP profile."""


@dataclass(frozen=True)
class Profile:
    """One SMTP profile: its form, its test."""

    profile_id: str


@dataclass(frozen=True)
class Routines:
    """Every routine."""


@dataclass(frozen=True)
class Bounces:
    """The reports read back."""


@dataclass(frozen=True)
class Report:
    """One report read back: how it was read, and the raw message."""

    report_id: int


Place = (
    Runs
    | Run
    | RecipientMessage
    | Customer
    | Definitions
    | Plan
    | Profiles
    | Profile
    | Routines
    | Bounces
    | Report
)
