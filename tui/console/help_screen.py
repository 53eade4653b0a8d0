"""Help: every key of the screen it was opened from, and of the app."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui.console.live import LiveScreen


class HelpScreen(Screen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, about: Screen[object]) -> None:
        super().__init__()
        self.about = about

    def compose(self) -> ComposeResult:
        name = type(self.about).__name__.removesuffix("Screen") or "Console"
        lines = [f"[b]{name}[/b]"]
        if isinstance(self.about, LiveScreen) and self.about.PURPOSE:
            lines.append(self.about.PURPOSE)
        lines.append("")
        bindings = [*getattr(self.about, "BINDINGS", []), *self.app.BINDINGS]
        for binding in bindings:
            if not isinstance(binding, Binding) or not binding.description:
                continue  # a key's second binding, listed once under its first
            keys = binding.key_display or binding.key
            lines.append(f"  [b]{keys:<18}[/b] {binding.description}")
        lines += ["", "ctrl+p opens the command palette: every action by name."]
        yield Static("msgrun · help", id="title-bar")
        with VerticalScroll(classes="scroll"):
            yield Static("\n".join(lines))
        yield Footer()

    def action_close(self) -> None:
        self.app.pop_screen()
