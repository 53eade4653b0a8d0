"""Customer drill-down: find a customer; see everything stored and every decision, with fixes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Input, Static

from core.planner.load import PlanningError
from core.views.customers import CustomerMatches, customer_report, find_customers
from tui.console.formatting import clip
from tui.console.live import LiveScreen
from tui.console.widgets import SearchInput
from tui.plan_text import why_text


@dataclass
class Loaded:
    """What one load read: the matches of a search, and the report of the customer shown."""

    matches: CustomerMatches | None
    customer_id: str | None
    report: str | None


class CustomerScreen(LiveScreen):
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
    ) -> None:
        super().__init__()
        self.customer_id = customer_id
        self.definition = definition
        self.at = at
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

    def load(self) -> Any:
        query, customer_id = self.query_text, self.customer_id
        matches = None
        if query is not None:
            matches = find_customers(self.console.database, query)
            customer_id = matches.unique.id if matches.unique is not None else None
        elif customer_id == self.loaded_for:
            return None
        if customer_id is None:
            return Loaded(matches, None, None)
        try:
            report = customer_report(
                self.console.database,
                customer_id,
                self.at or self.console.clock.now(),
                definition_id=self.definition,
            )
        except PlanningError as error:
            return Loaded(matches, customer_id, str(error))
        return Loaded(matches, customer_id, why_text(report))

    def show(self, data: Any) -> None:
        if data is None:
            return
        loaded: Loaded = data
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
        self.console.refresh_screen()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a match: that customer's drill-down."""
        event.stop()
        if self.matches is None or event.cursor_row >= len(self.matches.matches):
            return
        self.customer_id = self.matches.matches[event.cursor_row].id
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
