"""SMTP profiles: every sending profile, its server and its last test; open one to test it."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from core.smtp_profiles import ProfileSummary, list_profiles
from tui.console.formatting import last_test
from tui.console.live import TableScreen


class ProfilesScreen(TableScreen[ProfileSummary]):
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
    ]

    def compose(self) -> ComposeResult:
        yield Static("msgrun · SMTP profiles", id="title-bar")
        yield Static("", id="profiles-summary", classes="summary")
        table: DataTable[str] = DataTable(id="profiles", cursor_type="row", zebra_stripes=True)
        for label, width in (
            ("Profile", 14),
            ("Server", 26),
            ("Security", 8),
            ("User", 18),
            ("Last test", 24),
        ):
            table.add_column(label, width=width)
        yield table
        yield Footer()

    def load(self) -> Any:
        return list_profiles(self.console.database)

    def show(self, data: Any) -> None:
        self.items = data
        table = self.query_one("#profiles", DataTable)
        row = table.cursor_row
        table.clear()
        zone = self.console.clock.now().tzinfo
        for summary in self.items:
            settings = summary.settings
            table.add_row(
                settings.id,
                f"{settings.host}:{settings.port}",
                settings.security,
                settings.username or "-",
                last_test(summary, zone),
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
        from tui.console.profile_screen import ProfileScreen

        summary = self.selected()
        if summary is not None:
            self.app.push_screen(ProfileScreen(summary.settings.id))

    def action_back(self) -> None:
        self.app.pop_screen()
