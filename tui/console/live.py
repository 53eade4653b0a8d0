"""Screens that show live data: ``load`` reads (in a worker thread), ``show`` paints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen

if TYPE_CHECKING:
    from tui.console.app import MsgrunConsole


class LiveScreen(Screen[None]):
    """A screen refreshed by the app's one polling loop."""

    # Help text: what this screen is for (shown in the help screen).
    PURPOSE = ""

    @property
    def console(self) -> MsgrunConsole:
        from tui.console.app import MsgrunConsole

        assert isinstance(self.app, MsgrunConsole)
        return self.app

    def load(self) -> Any:
        """Read what the screen shows. Runs in a worker thread: no widgets here."""
        return None

    def show(self, data: Any) -> None:
        """Paint what ``load`` read. Runs on the main thread, inside a batch update."""

    def on_screen_resume(self) -> None:
        self.console.refresh_screen()
