"""Message view: a recipient's message, headers and body, as received or as msgrun builds it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from core.attachments.evidence import sent_lines
from core.received_mail import received_message
from core.states import EXCLUDED, HELD, RETRYING, UNSETTLED
from core.templating import RenderError
from core.views.deliveries import Delivery
from core.views.message_preview import recipient_message
from core.views.runs import recipient_detail
from tui.console.formatting import plural, styled
from tui.console.live import LiveScreen
from tui.delivery_text import attempt_lines, outcome_lines

SHOWN_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment is not None else "-"


def delivery_lines(detail: Delivery) -> list[str]:
    """A recipient's delivery in full: the whole reply (whose words), attempts and times."""
    document = f" · {detail.document_id} {detail.label or ''}" if detail.document_id else ""
    lines = [
        "[b]Delivery[/b]",
        escape(f"customer {detail.customer_id} · {detail.address or '(no address)'}{document}"),
        f"state {styled(detail.state)} · {plural(detail.attempts, 'attempt')} · "
        f"last change {when(detail.updated_at)}",
    ]
    d = detail
    if detail.sent_at is not None:
        lines.append(f"sent at {when(detail.sent_at)}")
    if d.held_until is not None:
        lines.append(escape(f"held {d.held_words()}"))
    elif detail.send_after is not None and detail.state == HELD:
        lines.append(f"held until {when(detail.send_after)}")
    if detail.next_attempt_at is not None and detail.state == RETRYING:
        lines.append(f"next attempt {when(detail.next_attempt_at)}")
    if detail.state == EXCLUDED:
        lines.append(escape(detail.exclusion()))
    elif detail.by_msgrun:
        lines.append(f"msgrun's own verdict (the server said nothing): {escape(detail.reply)}")
    elif d.settled is not None:
        lines.append(f"settled: {escape(d.settled)}")
    elif detail.smtp_code:
        lines.append(f"the server replied: {escape(detail.reply)}")
    elif detail.error:
        lines.append(f"error: {escape(detail.error)}")
    elif detail.state in UNSETTLED:
        lines.append("no reply yet")
    lines += [escape(line) for line in sent_lines(detail.attachments, detail.state, detail.sent_at)]
    return lines + answer_lines(d)


def answer_lines(d: Delivery) -> list[str]:
    """After sending: every attempt, every report about it, and where it was handed on."""
    lines = []
    if d.attempt_log:
        lines.append("[b]Attempts[/b] [dim](UTC)[/]")
        lines += [escape(line) for line in attempt_lines(d, "  ")]
    if d.outcomes:
        lines.append("[b]Reports[/b]")
        lines += [escape(line) for line in outcome_lines(d, "  ")]
    if d.handed_on_to is not None:
        lines.append(f"handed on to follow-up run {d.handed_on_to}: this run sends it no more")
    return lines


@dataclass(frozen=True)
class Read:
    """What the message view read: the delivery, and the message or why there is none."""

    detail: Delivery | None  # None: no such recipient
    source: str  # "as the server received it", "as msgrun builds it", or NO_MESSAGE
    raw: bytes  # the message; with NO_MESSAGE, why there is none (in words)


NO_MESSAGE = "no message"


class MessageScreen(LiveScreen[Read | None]):
    PURPOSE = (
        "A recipient in full: its state, attempts, times and the server's whole reply "
        "(or msgrun's own verdict, said to be msgrun's); then its message, headers and body, "
        "as the local server received it (in the demo), else as msgrun builds it."
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
            yield Static("", id="delivery")
            yield Static("", id="message")
        yield Footer()

    def load(self) -> Read | None:
        if self.shown:
            return None
        try:
            detail = recipient_detail(self.console.database, self.run_id, self.position)
        except LookupError as error:
            return Read(None, NO_MESSAGE, str(error).encode())
        if not detail.has_message:
            reason = (
                "No message: the plan excluded this recipient, so none was built."
                if detail.state == EXCLUDED
                else "No message: this recipient has no address."
            )
            return Read(detail, NO_MESSAGE, reason.encode())
        folder = self.console.mail_folder
        if folder is not None and detail.message_id:
            received = received_message(folder, detail.message_id)
            if received is not None:
                return Read(detail, "as the server received it", received)
        try:
            return Read(
                detail,
                "as msgrun builds it",
                recipient_message(self.console.database, self.run_id, self.position),
            )
        except (LookupError, ValueError) as error:
            return Read(detail, NO_MESSAGE, str(error).encode())
        except RenderError as error:  # the recipient's reason, not a fault of the console
            why = f"No message: its template fails to render for this recipient ({error})."
            return Read(detail, NO_MESSAGE, why.encode())

    def show(self, data: Read | None) -> None:
        if data is None:
            return
        self.shown = True
        detail, source, raw = data.detail, data.source, data.raw
        if detail is not None:
            self.query_one("#delivery", Static).update("\n".join([*delivery_lines(detail), ""]))
        if source == NO_MESSAGE:
            self.query_one("#message", Static).update(escape(raw.decode()))
            return
        message = message_from_bytes(raw, policy=default)
        assert isinstance(message, EmailMessage)
        lines = [f"[b]Message[/b] [dim]{source}[/]"]
        lines += [
            f"[b]{name}:[/b] {escape(str(message[name]))}"
            for name in SHOWN_HEADERS
            if message[name] is not None
        ]
        body = message.get_body(preferencelist=("plain", "html"))
        lines += ["", escape(body.get_content() if body is not None else "(no text part)")]
        self.query_one("#message", Static).update("\n".join(lines))

    def action_back(self) -> None:
        self.app.pop_screen()
