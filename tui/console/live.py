"""Screens that show live data: ``load`` reads (in a worker thread), ``show`` paints.

A live screen is generic over what its ``load`` returns: ``load`` reads the
database and returns that value without touching the screen (no widget, no
attribute written); ``show`` gets the value on the UI thread and applies it.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable

from tui.console.context import Console

Data = TypeVar("Data")
Item = TypeVar("Item")


class LiveScreen(Screen[None], Generic[Data]):
    """A screen refreshed by the app's one polling loop."""

    # Help text: what this screen is for (shown in the help screen).
    PURPOSE = ""

    @property
    def console(self) -> Console:
        app = self.app
        assert isinstance(app, Console), f"{type(app).__name__} is not a msgrun console"
        return app

    def load(self) -> Data:
        """Read what the screen shows. Runs in a worker thread: no widgets here, and no
        attribute of the screen written (``show`` applies what this returns)."""
        raise NotImplementedError

    def show(self, data: Data) -> None:
        """Paint what ``load`` read. Runs on the main thread, inside a batch update."""

    def on_screen_resume(self) -> None:
        self.console.release_notices()  # those held while a confirmation was asked
        self.console.refresh_screen()


def first_and_last(screen: str) -> list[Binding]:
    """``g`` and ``G``: the cursor on the table's first and last row (as on a run's)."""
    return [
        Binding("g", "first_row", "First row", show=False, id=f"{screen}.top"),
        Binding("G", "last_row", "Last row", show=False, id=f"{screen}.bottom"),
    ]


class TableScreen(LiveScreen[Data], Generic[Item, Data]):
    """A live screen around one table of items: vim-style moves and the selected item.

    The screen keeps the items it painted, in table order, in ``items``.
    """

    TABLE = ""  # the table's selector, e.g. "#runs"

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Item] = []

    def selected(self) -> Item | None:
        table = self.query_one(self.TABLE, DataTable)
        if not self.items or table.cursor_row >= len(self.items):
            return None
        return self.items[table.cursor_row]

    def action_cursor_down(self) -> None:
        self.query_one(self.TABLE, DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(self.TABLE, DataTable).action_cursor_up()

    def action_first_row(self) -> None:
        self.query_one(self.TABLE, DataTable).move_cursor(row=0)

    def action_last_row(self) -> None:
        table = self.query_one(self.TABLE, DataTable)
        table.move_cursor(row=max(0, table.row_count - 1))
