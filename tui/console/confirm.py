"""A yes/no question before anything that changes a run."""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.console.charts import CountBars


class Confirm(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(
        self, question: str, detail: str = "", counts: Mapping[str, int] | None = None
    ) -> None:
        """``counts``, when given, are drawn under the detail as bars (largest first)."""
        super().__init__()
        self.question = question
        self.detail = detail
        self.counts = dict(counts or {})

    def on_mount(self) -> None:
        # A question is never drawn over by a notice: those on screen go, and new
        # ones wait until it is answered (MsgrunConsole.notify holds them).
        self.app.clear_notifications()
        for screen in self.app.screen_stack:  # the screen beneath still shows its own
            for rack in screen.query("#textual-toastrack"):
                rack.remove_children()
        if self.counts:
            self.query_one("#confirm-bars", CountBars).show_counts(self.counts)

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(self.question, id="confirm-question")
            if self.detail:
                yield Static(self.detail, id="confirm-detail")
            if self.counts:
                yield CountBars(id="confirm-bars")
            yield Static("[b]y[/b] yes    [b]n[/b] no", id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
