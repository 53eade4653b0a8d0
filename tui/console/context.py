"""What a screen may ask of the console: the one thing screens type against.

The app (``app.py``) implements it; screens never import the app. Everything
here is safe to use from the UI thread; ``database``, ``clock`` and ``launch``
are also what a worker thread reads with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from core.clock import Clock
from core.storage import Database
from tui.console.places import Place

Result = TypeVar("Result")

# Delivers a run from a process of its own: (database URL, run id, resend_unknown=…).
Launcher = Callable[..., None]


@runtime_checkable
class Console(Protocol):
    """The msgrun console as its screens see it."""

    @property
    def database(self) -> Database: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def launch(self) -> Launcher: ...

    @property
    def db_url(self) -> str: ...

    @property
    def mail_folder(self) -> Path | None:
        """Where a local server keeps what it received (the demo's), or None."""
        ...

    @property
    def stopwatch(self) -> Callable[[], float]:
        """Times the steps of an SMTP test (pictures of the screen pass a steady one)."""
        ...

    @property
    def still(self) -> bool:
        """No cursor blink and no animation (deterministic screenshots)."""
        ...

    def refresh_screen(self) -> None:
        """Load the current screen's data in a worker thread, then paint it."""

    def release_notices(self) -> None:
        """Show the notices held while a confirmation was asked."""

    def perform(
        self,
        work: Callable[[], Result],
        then: Callable[[Result], None] | None = None,
        *,
        failure: str = "Could not do it",
    ) -> None:
        """Run ``work`` (a write) in a worker thread; ``then`` gets its result on the UI
        thread; a failure is a notice titled ``failure``."""

    def visit(self, place: Place, *, replace: bool = False) -> None:
        """Open the screen of ``place`` over the current one (``replace``: instead of it)."""
