"""Message view: a recipient's message, headers and body, as received or as msgrun builds it."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from core.delivery.preview import recipient_message
from tui.console.live import LiveScreen

SHOWN_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")


class MessageScreen(LiveScreen):
    PURPOSE = (
        "A recipient's message: headers and body, as the local server received it (in the "
        "demo), else as msgrun builds it."
    )
    BINDINGS = [Binding("escape", "back", "Back", id="message.back")]

    def __init__(self, run_id: int, position: int, message_id: str | None) -> None:
        super().__init__()
        self.run_id = run_id
        self.position = position
        self.message_id = message_id
        self.shown = False

    def compose(self) -> ComposeResult:
        yield Static(f"msgrun · run {self.run_id} · recipient {self.position + 1}", id="title-bar")
        with VerticalScroll(classes="scroll"):
            yield Static("", id="message")
        yield Footer()

    def load(self) -> Any:
        if self.shown:
            return None
        folder = self.console.mail_folder
        if folder is not None and self.message_id:
            from fixtures.smtp_servers import mail_file_name

            received = folder / mail_file_name(self.message_id)
            if received.exists():
                return "as the server received it", received.read_bytes()
        try:
            return "as msgrun builds it", recipient_message(
                self.console.database, self.run_id, self.position
            )
        except (LookupError, ValueError) as error:
            return "no message", str(error).encode()

    def show(self, data: Any) -> None:
        if data is None:
            return
        self.shown = True
        source, raw = data
        if source == "no message":
            self.query_one("#message", Static).update(raw.decode())
            return
        message = message_from_bytes(raw, policy=default)
        assert isinstance(message, EmailMessage)
        lines = [f"[dim]{source}[/]", ""]
        lines += [
            f"[b]{name}:[/b] {_escape(str(message[name]))}"
            for name in SHOWN_HEADERS
            if message[name] is not None
        ]
        body = message.get_body(preferencelist=("plain", "html"))
        lines += ["", _escape(body.get_content() if body is not None else "(no text part)")]
        self.query_one("#message", Static).update("\n".join(lines))

    def action_back(self) -> None:
        self.app.pop_screen()


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
