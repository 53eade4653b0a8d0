"""Widgets of the console."""

from __future__ import annotations

from textual.widgets import Input


class FieldInput(Input):
    """A text field; its cursor does not blink in still mode (screenshots)."""

    def on_mount(self) -> None:
        if getattr(self.app, "still", False):
            self.cursor_blink = False


# The search fields of the tables are plain fields.
SearchInput = FieldInput
