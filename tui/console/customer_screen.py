"""Customer drill-down: find a customer; see everything stored and every decision, with fixes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Input, Static

from core.attachments.evidence import sent_lines
from core.clock import format_instant
from core.planner.load import PlanningError
from core.states import EXCLUDED
from core.views.customers import (
    CustomerMatches,
    DrillDown,
    RecordedRecipient,
    ReportAbout,
    drill_down,
    find_customers,
)
from tui.console.formatting import clip, plural
from tui.console.live import LiveScreen
from tui.console.widgets import SearchInput
from tui.plan_text import INDENT, why_text

Recipient = tuple[int, int]  # (run id, position): a run's recipient


def utc(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else "-"


def recorded_lines(recorded: RecordedRecipient) -> list[str]:
    """The recipient as its run recorded it: decision, delivery, outcome (words, not a plan)."""
    d, o = recorded.detail, recorded.outcome
    label = "  ".join(x for x in (d.address or "(no address)", d.document_id, d.label) if x)
    lines = [
        f"Run {d.run_id} · {d.definition_id} · recipient {d.position + 1}, as the run recorded it",
        f"{INDENT}{label}",
        f"{INDENT}decision  {d.decision}",
    ]
    lines += [
        f"{INDENT}{'':10}- {r.get('code', '?')}: {r.get('detail', '')}".rstrip(": ")
        for r in d.reasons
    ]
    if d.state == EXCLUDED:
        lines.append(f"{INDENT}delivery  excluded: nothing was sent")
    else:
        when = f" · sent {utc(d.sent_at)}" if d.sent_at is not None else ""
        lines.append(f"{INDENT}delivery  {d.state} · {plural(d.attempts, 'attempt')}{when}")
        if d.reply:
            lines.append(f"{INDENT}{'':10}{d.reply}")
        # The SHA-256 of each is in the recipient's view (m) and run show --json.
        carried = sent_lines(d.attachments, d.state, d.sent_at, with_sha256=False)
        lines += [f"{INDENT}{'':10}{line}" for line in carried]
    if o is None:
        lines.append(f"{INDENT}outcome   none reported")
    else:
        status = f" {o.status}" if o.status else ""
        lines.append(
            f"{INDENT}outcome   {o.name}{status} · reported {utc(o.reported_at)} · "
            f"report {o.report_id}"
        )
        if o.detail:
            lines.append(f"{INDENT}{'':10}{o.detail}")
    return lines


def report_lines(reports: list[ReportAbout]) -> list[str]:
    """Each report about the customer: its date, status and the server's words."""
    lines = ["Reports (bounces, complaints, delays; UTC):"]
    for r in reports:
        lines.append(
            f"{INDENT}{r.reported_at:%Y-%m-%d %H:%M}  {r.outcome} {r.status or '(no status)'}  "
            f"{r.address or '-'} · run {r.run}"
        )
        if r.detail:
            lines.append(f"{INDENT * 3}{r.detail}")
    return lines


def drill_down_text(loaded: DrillDown) -> str:
    """The drill-down: the recipient it was opened from first, then the customer with its
    reports, then the plans (what a plan would decide now, when opened from a recipient)."""
    lines = why_text(loaded.report).split("\n")
    if loaded.reports:
        lines[2:2] = ["", *report_lines(loaded.reports)]
    if loaded.recorded is not None:
        heading = f"Decisions at {format_instant(loaded.report.at)}:"
        lines = [
            f"What a plan would decide now ({format_instant(loaded.report.at)}), with today's data:"
            if line == heading
            else line
            for line in lines
        ]
        lines = [*recorded_lines(loaded.recorded), "", *lines]
    return "\n".join(lines)


@dataclass
class Loaded:
    """What one load read: the matches of a search, and the report of the customer shown."""

    matches: CustomerMatches | None
    customer_id: str | None
    report: str | None


class CustomerScreen(LiveScreen[Loaded | None]):
    AUTO_FOCUS = "#customer-search"
    PURPOSE = (
        "Search a customer by id, name or address (any case, any part); pick one of the "
        "matches with the arrows and enter; see contacts, addresses with keys and "
        "preferences, services, documents, suppressions, history, and why each definition "
        "includes, defers or excludes each candidate, with the fix."
    )
    BINDINGS = [
        Binding("escape", "back", "Back", id="customer.back"),
        Binding("slash", "search", "Search", key_display="/", id="customer.search"),
        Binding("j", "cursor_down", "Down", show=False, id="customer.down"),
        Binding("k", "cursor_up", "Up", show=False, id="customer.up"),
    ]

    def __init__(
        self,
        customer_id: str | None = None,
        *,
        definition: str | None = None,
        at: datetime | None = None,
        recipient: Recipient | None = None,
    ) -> None:
        """``recipient``: the (run id, position) it was opened from; the drill-down then
        leads with that recipient as the run recorded it, and plans at now."""
        super().__init__()
        self.customer_id = customer_id
        self.definition = definition
        self.at = at
        self.recipient = recipient
        self.query_text: str | None = None  # a search not yet answered
        self.loaded_for: str | None = None
        self.matches: CustomerMatches | None = None

    def compose(self) -> ComposeResult:
        yield Static("msgrun · customer", id="title-bar")
        yield SearchInput(
            placeholder="customer id, name or address, then enter", id="customer-search"
        )
        yield Static("", id="customer-found", classes="summary")
        table: DataTable[str] = DataTable(id="customer-matches", cursor_type="row")
        table.add_column("Customer", width=14, key="id")
        table.add_column("Name", width=40, key="name")
        table.display = False
        yield table
        with VerticalScroll(classes="scroll", id="customer-scroll"):
            yield Static("", id="customer-report")
        yield Footer()

    def on_mount(self) -> None:
        if self.customer_id is None:
            self.query_one("#customer-search", Input).focus()

    def load(self) -> Loaded | None:
        query, customer_id = self.query_text, self.customer_id
        matches = None
        if query is not None:
            matches = find_customers(self.console.database, query)
            customer_id = matches.unique.id if matches.unique is not None else None
        elif customer_id == self.loaded_for:
            return None
        if customer_id is None:
            return Loaded(matches, None, None)
        # From a run's recipient, the plan shown after the run's record is today's.
        recipient = self.recipient if customer_id == self.customer_id else None
        at = self.console.clock.now() if recipient is not None else self.at
        try:
            loaded = drill_down(
                self.console.database,
                customer_id,
                at or self.console.clock.now(),
                definition_id=self.definition,
                recipient=recipient,
            )
        except PlanningError as error:
            return Loaded(matches, customer_id, str(error))
        return Loaded(matches, customer_id, drill_down_text(loaded))

    def show(self, data: Loaded | None) -> None:
        if data is None:
            return
        loaded = data
        found = self.query_one("#customer-found", Static)
        table = self.query_one("#customer-matches", DataTable)
        if loaded.matches is not None:
            self.query_text = None
            self.matches = loaded.matches
            found.update(escape(loaded.matches.headline()))
            table.clear()
            several = loaded.matches.total > 1
            for match in loaded.matches.matches if several else []:
                table.add_row(clip(match.id, 14), escape(clip(match.name, 40)), key=match.id)
            table.display = several
            if several:
                table.focus()
        if loaded.customer_id is not None:
            self.customer_id = self.loaded_for = loaded.customer_id
            self.query_one("#customer-report", Static).update(escape(loaded.report or ""))
            self.query_one("#customer-scroll").focus()
        elif loaded.matches is not None:
            self.query_one("#customer-report", Static).update("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        if not query:
            return
        self.query_text = query
        self.definition = None
        self.recipient = None
        self.console.refresh_screen()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a match: that customer's drill-down."""
        event.stop()
        if self.matches is None or event.cursor_row >= len(self.matches.matches):
            return
        self.customer_id = self.matches.matches[event.cursor_row].id
        self.recipient = None
        self.query_one("#customer-matches", DataTable).display = False
        self.query_one("#customer-found", Static).update(
            escape(f"{self.matches.headline()} · showing {self.customer_id}")
        )
        self.console.refresh_screen()

    def action_cursor_down(self) -> None:
        table = self.query_one("#customer-matches", DataTable)
        if table.display:
            table.action_cursor_down()

    def action_cursor_up(self) -> None:
        table = self.query_one("#customer-matches", DataTable)
        if table.display:
            table.action_cursor_up()

    def action_search(self) -> None:
        self.query_one("#customer-search", Input).focus()

    def action_back(self) -> None:
        table = self.query_one("#customer-matches", DataTable)
        if not table.display and self.matches is not None and self.matches.total > 1:
            table.display = True  # back from a customer to the matches it was picked from
            table.focus()
            return
        self.app.pop_screen()
