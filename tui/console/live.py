"""Screens that show live data: ``load`` reads (in a worker thread), ``show`` paints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable

Item = TypeVar("Item")

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
        self.console.release_notices()  # those held while a confirmation was asked
        self.console.refresh_screen()


def first_and_last(screen: str) -> list[Binding]:
    """``g`` and ``G``: the cursor on the table's first and last row (as on a run's)."""
    return [
        Binding("g", "first_row", "First row", show=False, id=f"{screen}.top"),
        Binding("G", "last_row", "Last row", show=False, id=f"{screen}.bottom"),
    ]


class TableScreen(LiveScreen, Generic[Item]):
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
