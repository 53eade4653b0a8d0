"""The msgrun console: one app, a stack of screens, one polling loop."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen

from core.clock import Clock, SystemClock
from core.storage import Database
from core.storage.notices import RunChanges
from tui.console import places
from tui.console.bounces_screen import BouncesScreen
from tui.console.confirm import Confirm
from tui.console.context import Launcher
from tui.console.help_screen import HelpScreen
from tui.console.launcher import deliver_in_background
from tui.console.live import LiveScreen
from tui.console.messages import Performed
from tui.console.navigator import screen_for

Result = TypeVar("Result")


class MsgrunConsole(App[None]):
    """Operations console for message runs. Keyboard first; the footer shows every key.

    What its screens may ask of it is ``context.Console``.
    """

    CSS_PATH = Path(__file__).with_name("console.tcss")
    TITLE = "msgrun"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Help", key_display="?", id="app.help"),
        Binding("ctrl+r", "refresh", "Refresh", show=False, id="app.refresh"),
    ]

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock | None = None,
        poll_seconds: float | None = 0.5,
        launch: Launcher = deliver_in_background,
        db_url: str | None = None,
        still: bool = False,
        mail_folder: Path | None = None,
        first_screen: Callable[[], Screen[Any]] | None = None,
        stopwatch: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        # `still`: no cursor blink and no animation (deterministic screenshots).
        self.still = still
        if still:
            self.animation_level = "none"
        self.database = database
        self.clock = clock or SystemClock()
        self.poll_seconds = poll_seconds
        self.launch = launch
        self.db_url = db_url or database.url.render_as_string(hide_password=False)
        # Where a local server keeps what it received (the demo's), for the message view.
        self.mail_folder = mail_folder
        self.first_screen = first_screen
        # Times the steps of an SMTP test; pictures of the screen pass a steady one.
        self.stopwatch = stopwatch
        self._polling = False
        self._again = False
        self.run_changes: RunChanges | None = None
        # Notices raised while a confirmation is asked: shown once it is answered.
        self._held: list[Callable[[], None]] = []
        # The failure of the last load, once notified: the same failure again (every
        # poll, every key) is not stacked notice upon notice.
        self._load_failure: str | None = None

    def on_mount(self) -> None:
        self.visit(places.Runs())
        if self.first_screen is not None:
            self.push_screen(self.first_screen())
        if self.poll_seconds:
            self.set_interval(self.poll_seconds, self.refresh_screen)
        # PostgreSQL tells of runs started, stopped or ended elsewhere: shown at once.
        if RunChanges.possible(self.database):
            self.run_changes = RunChanges(self.database, self._run_changed).start()

    def _run_changed(self, run_id: int) -> None:
        """From the listening thread: another process changed a run."""
        with contextlib.suppress(RuntimeError):  # the app is closing
            self.call_from_thread(self.refresh_screen)

    def on_unmount(self) -> None:
        if self.run_changes is not None:
            self.run_changes.stop()

    # -- the one polling loop ------------------------------------------------------

    def refresh_screen(self) -> None:
        """Load the current screen's data in a worker; never two loads at once.

        A refresh asked for while a load is under way (a key pressed during a
        poll) is not dropped: it runs as soon as that load has painted.
        """
        screen = self.screen
        if not isinstance(screen, LiveScreen):
            return
        if self._polling:
            self._again = True
            return
        self._polling = True
        self.run_worker(lambda: self._load(screen), thread=True, group="poll")

    def _load(self, screen: LiveScreen[Any]) -> None:
        try:
            data = screen.load()
        except Exception as error:  # shown to the operator; never a traceback
            self.call_from_thread(self._done, screen, None, error)
        else:
            self.call_from_thread(self._done, screen, data, None)

    def _done(self, screen: LiveScreen[Any], data: Any, error: Exception | None) -> None:
        if not self.is_running:
            # The app is shutting down and taking its screens' widgets away: a load that
            # finishes now has nothing to paint (painting it failed the worker).
            self._polling = False
            return
        if error is None and screen.is_attached and not screen.is_mounted:
            # Read before its widgets were there (a busy machine): painted once they are
            # (no other load starts meanwhile).
            self.set_timer(0.05, partial(self._done, screen, data, None))
            return
        self._polling = False
        if error is not None:
            self._load_failed(error)
        elif screen.is_attached:
            self._load_failure = None
            with self.batch_update():
                screen.show(data)
        if self._again:
            self._again = False
            self.refresh_screen()

    def _load_failed(self, error: Exception) -> None:
        """A notice of a failed load; the same failure again is not another notice."""
        line = error_line(error)
        if line == self._load_failure:
            return
        self._load_failure = line
        self.notify(line, title="Could not read the database", severity="error", timeout=10)

    # -- confirmed writes, off the UI thread ---------------------------------------

    def perform(
        self,
        work: Callable[[], Result],
        then: Callable[[Result], None] | None = None,
        *,
        failure: str = "Could not do it",
    ) -> None:
        """Run ``work`` (a write: stop, restart, start…) in a worker thread; ``then`` paints.

        The UI thread never waits on the database: the result comes back as a
        ``Performed`` message, handled on the UI thread.
        """

        def job() -> None:
            try:
                result = work()
            except Exception as error:  # shown to the operator; never a traceback
                self.post_message(Performed(None, error, then, failure))
            else:
                self.post_message(Performed(result, None, then, failure))

        self.run_worker(job, thread=True, group="write")

    @on(Performed)
    def _performed(self, event: Performed) -> None:
        if event.error is not None:
            self.notify(error_line(event.error), title=event.failure, severity="error", timeout=10)
        elif event.then is not None:
            event.then(event.result)
        self.refresh_screen()

    # -- notices never draw over a question ---------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """A notice; while a confirmation is asked it waits, so it never covers the question."""
        show = partial(
            super().notify,
            message,
            title=title,
            severity=severity,
            timeout=timeout,
            markup=markup,
        )
        if isinstance(self.screen, Confirm):
            self._held.append(show)
        else:
            show()

    def release_notices(self) -> None:
        """Show the notices held while a confirmation was asked."""
        held, self._held = self._held, []
        for show in held:
            show()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette offers every action of the screen by name, as the footer does."""
        yield from super().get_system_commands(screen)
        seen: set[str] = set()
        for binding in [*getattr(screen, "BINDINGS", []), *self.BINDINGS]:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if binding.action in seen:
                continue
            seen.add(binding.action)
            keys = binding.key_display or binding.key
            yield SystemCommand(
                binding.description,
                f"{binding.description} ({keys})",
                partial(self._run_action, screen, binding.action),
            )
        if "bounces" not in seen:  # from every screen, not only from Runs
            yield SystemCommand(
                "Bounces",
                "The reports read back: bounces, complaints, delays, unmatched ones",
                self.action_bounces,
            )

    def _run_action(self, screen: Screen[Any], action: str) -> None:
        self.call_later(self.run_action, action, screen)

    # -- moving between screens -------------------------------------------------------

    def visit(self, place: places.Place, *, replace: bool = False) -> None:
        """Open the screen of ``place`` over the current one (``replace``: instead of it)."""
        screen = screen_for(place)
        if replace:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_bounces(self) -> None:
        if not isinstance(self.screen, BouncesScreen):
            self.visit(places.Bounces())

    def action_refresh(self) -> None:
        self.refresh_screen()


def error_line(error: Exception) -> str:
    """An error in one line, for a notice (never a traceback)."""
    text = str(error).strip()
    if isinstance(error, (LookupError, ValueError)) and text:
        return text  # our own words: they name what is wrong
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}"
