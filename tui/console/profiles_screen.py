"""SMTP profiles: every sending profile, its server and its last test; open one to test it."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from core.smtp_profiles import ProfileSummary, list_profiles
from tui.console import places
from tui.console.formatting import Column, add_columns, clip, last_test
from tui.console.live import TableScreen, first_and_last

# At 80 columns the user gives way (the profile's form shows it).
COLUMNS: list[Column] = [
    ("Profile", 10, 14),
    ("Server", 18, 26),
    ("Security", 8, 8),
    ("User", 8, 18),
    ("Last test", 24, 30),
]


class ProfilesScreen(TableScreen[ProfileSummary, list[ProfileSummary]]):
    TABLE = "#profiles"
    AUTO_FOCUS = "#profiles"
    PURPOSE = (
        "Every SMTP profile with its server and its last test. Open one to edit its "
        "settings, test it step by step and send a test message."
    )
    BINDINGS = [
        Binding("enter", "open", "Open profile", id="profiles.open"),
        Binding("escape", "back", "Back", id="profiles.back"),
        Binding("j", "cursor_down", "Down", show=False, id="profiles.down"),
        Binding("k", "cursor_up", "Up", show=False, id="profiles.up"),
        *first_and_last("profiles"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("msgrun · SMTP profiles", id="title-bar")
        yield Static("", id="profiles-summary", classes="summary")
        table: DataTable[str] = DataTable(id="profiles", cursor_type="row", zebra_stripes=True)
        self.widths = add_columns(table, COLUMNS, ["User"], self.app.size.width, ["Server"])
        yield table
        yield Footer()

    def load(self) -> list[ProfileSummary]:
        return list_profiles(self.console.database)

    def show(self, data: list[ProfileSummary]) -> None:
        self.items = data
        table = self.query_one("#profiles", DataTable)
        row = table.cursor_row
        table.clear()
        zone = self.console.clock.now().tzinfo
        for summary in self.items:
            settings = summary.settings
            cells = {
                "Profile": clip(settings.id, self.widths["Profile"]),
                "Server": clip(f"{settings.host}:{settings.port}", self.widths["Server"]),
                "Security": settings.security,
                "User": clip(settings.username or "-", self.widths.get("User", 0)),
                "Last test": last_test(summary, zone),
            }
            table.add_row(
                *(escape(cells[n]) if n != "Last test" else cells[n] for n in self.widths),
                key=settings.id,
            )
        if self.items:
            table.move_cursor(row=min(row, len(self.items) - 1))
        self.query_one("#profiles-summary", Static).update(
            f"{len(self.items)} profile{'s' if len(self.items) != 1 else ''} · [b]enter[/b] "
            "to edit, test and send a test message"
            if self.items
            else "No SMTP profiles yet: they come with an import (msgrun import FILE)."
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        summary = self.selected()
        if summary is not None:
            self.console.visit(places.Profile(summary.settings.id))

    def action_back(self) -> None:
        self.app.pop_screen()
