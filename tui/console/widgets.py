"""Widgets of the console."""

from __future__ import annotations

from textual.widgets import Input


class SearchInput(Input):
    """A search field; its cursor does not blink in still mode (screenshots)."""

    def on_mount(self) -> None:
        if getattr(self.app, "still", False):
            self.cursor_blink = False
