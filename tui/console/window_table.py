"""A table of a window of rows, each one line of text: what a run's recipients are shown in.

Textual's ``DataTable`` lays every cell out through Rich (a fortieth of a
second for a screenful here), and a run's screen shows a new window at every
key. Here each row is one ``Text`` line made beforehand (``formatting.row_line``:
the cells cropped and padded to their columns), drawn with Textual's line API:
a header, zebra stripes, a row cursor, and ``RowSelected`` on enter or a
click, with the look and the keys of a DataTable with a row cursor.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget


class WindowTable(Widget, can_focus=True):
    """A header line over rows of one line each, with a row cursor."""

    COMPONENT_CLASSES = {
        "window-table--header",
        "window-table--cursor",
        "window-table--even-row",
        "window-table--odd-row",
    }
    DEFAULT_CSS = """
    WindowTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        &:focus {
            background-tint: $foreground 5%;
            & > .window-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .window-table--header {
                background-tint: $foreground 5%;
            }
        }
        &:dark > .window-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .window-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .window-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .window-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("home", "cursor_home", "First", show=False),
        Binding("end", "cursor_end", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    class RowSelected(Message):
        """Enter (or a click) on a row."""

        def __init__(self, table: WindowTable, cursor_row: int) -> None:
            super().__init__()
            self.table = table
            self.cursor_row = cursor_row

        @property
        def control(self) -> WindowTable:
            return self.table

    def __init__(self, *, id: str | None = None, zebra_stripes: bool = True) -> None:
        super().__init__(id=id)
        self.zebra_stripes = zebra_stripes
        self.header = Text()
        self.rows: list[Text] = []
        self.cursor_row = 0
        self.top = 0  # the first row shown
        self._strips: dict[tuple[int, bool, bool, int], Strip] = {}

    # -- what it holds ---------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def set_header(self, header: Text) -> None:
        self.header = header
        self._changed()

    def set_rows(self, lines: list[Text], cursor_row: int = 0) -> None:
        """The rows to show (a window: they replace the last), the cursor on
        ``cursor_row``; drawn once."""
        self.rows, self.top = lines, 0
        self.cursor_row = max(0, min(cursor_row, len(lines) - 1)) if lines else 0
        self._scroll_to_cursor()
        self._changed()

    def get_row_at(self, index: int) -> list[Text]:
        """The row's text, as the one cell of a DataTable row."""
        return [self.rows[index]]

    def move_cursor(self, *, row: int) -> None:
        """The cursor on ``row``: the lines drawn stay (they are kept by whether the
        cursor is on them), only what moved is drawn again."""
        self.cursor_row = max(0, min(row, len(self.rows) - 1)) if self.rows else 0
        self._scroll_to_cursor()
        self.refresh()

    def _changed(self) -> None:
        self._strips.clear()
        self.refresh()

    def _visible_rows(self) -> int:
        return max(0, self.size.height - 1)

    def _scroll_to_cursor(self) -> None:
        shown = self._visible_rows()
        if shown and self.cursor_row >= self.top + shown:
            self.top = self.cursor_row - shown + 1
        elif self.cursor_row < self.top:
            self.top = self.cursor_row

    # -- keys and the mouse -------------------------------------------------------------

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self.cursor_row + 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_home(self) -> None:
        self.move_cursor(row=0)

    def action_cursor_end(self) -> None:
        self.move_cursor(row=len(self.rows) - 1)

    def action_select(self) -> None:
        if self.rows:
            self.post_message(self.RowSelected(self, self.cursor_row))

    def on_click(self, event: events.Click) -> None:
        row = self.top + event.y - 1
        if event.y >= 1 and 0 <= row < len(self.rows):
            self.move_cursor(row=row)
            self.post_message(self.RowSelected(self, row))

    # -- drawing ----------------------------------------------------------------------------

    def on_resize(self) -> None:
        self._scroll_to_cursor()
        self._changed()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            header = base + self.get_component_rich_style("window-table--header")
            return self._strip(self.header, header, None, width)
        index = self.top + y - 1
        if index >= len(self.rows):
            return Strip.blank(width, base)
        # The cursor row is drawn with or without the focus (dimmed without it).
        cursor = index == self.cursor_row
        key = (index, cursor, cursor and self.has_focus, width)
        strip = self._strips.get(key)
        if strip is None:
            style = base
            if self.zebra_stripes:
                style += self.get_component_rich_style(
                    "window-table--odd-row" if index % 2 else "window-table--even-row"
                )
            post = None
            if cursor:
                cursor_style = self.get_component_rich_style("window-table--cursor")
                style += cursor_style
                # The cursor's colour over the cells' own, as a DataTable's row cursor.
                post = Style.from_color(color=cursor_style.color)
            strip = self._strips[key] = self._strip(self.rows[index], style, post, width)
        return strip

    def _strip(self, text: Text, style: Style, post: Style | None, width: int) -> Strip:
        segments = Segment.apply_style(text.render(self.app.console), style, post)
        return Strip(segments).adjust_cell_length(width, style)
