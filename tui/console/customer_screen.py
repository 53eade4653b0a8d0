"""Customer drill-down: find a customer; see everything stored and every decision, with fixes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Input, Static

from core.planner.explain import explain_customer
from core.planner.load import PlanningError
from core.storage.models import Address, Customer, table_of
from tui.console.live import LiveScreen
from tui.console.widgets import SearchInput
from tui.plan_text import why_text


class CustomerScreen(LiveScreen):
    AUTO_FOCUS = "#customer-search"
    PURPOSE = (
        "Search a customer by id, name or address; see contacts, addresses with keys and "
        "preferences, services, documents, suppressions, history, and why each definition "
        "includes, defers or excludes each candidate, with the fix."
    )
    BINDINGS = [
        Binding("escape", "back", "Back", id="customer.back"),
        Binding("slash", "search", "Search", key_display="/", id="customer.search"),
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
        self.loaded_for: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("msgrun · customer", id="title-bar")
        yield SearchInput(
            placeholder="customer id, name or address, then enter", id="customer-search"
        )
        with VerticalScroll(classes="scroll"):
            yield Static("", id="customer-report")
        yield Footer()

    def on_mount(self) -> None:
        if self.customer_id is None:
            self.query_one("#customer-search", Input).focus()

    def load(self) -> Any:
        if self.customer_id is None or self.customer_id == self.loaded_for:
            return None
        try:
            report = explain_customer(
                self.console.database,
                self.customer_id,
                self.at or self.console.clock.now(),
                definition_id=self.definition,
            )
        except PlanningError as error:
            return str(error)
        return report

    def show(self, data: Any) -> None:
        if data is None:
            return
        self.loaded_for = self.customer_id
        text = data if isinstance(data, str) else why_text(data)
        self.query_one("#customer-report", Static).update(_escape(text))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        if not query:
            return
        found = self._find(query)
        if not found:
            self.query_one("#customer-report", Static).update(f"No customer matches {query!r}.")
            return
        if len(found) > 1:
            listing = "\n".join(f"  {cid}  {name}" for cid, name in found[:30])
            self.query_one("#customer-report", Static).update(
                _escape(f"{len(found)} customers match {query!r}; type an id:\n{listing}")
            )
            return
        self.customer_id = found[0][0]
        self.definition = None
        self.console.refresh_screen()

    def _find(self, query: str) -> list[tuple[str, str]]:
        customer, address = table_of(Customer), table_of(Address)
        pattern = f"%{query.lower()}%"
        with self.console.database.connect() as connection:
            exact = connection.execute(
                select(customer.c.id, customer.c.name).where(customer.c.id == query)
            ).all()
            if exact:
                return [(r.id, r.name) for r in exact]
            rows = connection.execute(
                select(customer.c.id, customer.c.name)
                .where(
                    or_(
                        func.lower(customer.c.name).like(pattern),
                        customer.c.id.in_(
                            select(address.c.customer_id).where(
                                address.c.address_lower.like(pattern)
                            )
                        ),
                    )
                )
                .order_by(customer.c.id)
                .limit(100)
            ).all()
        return [(r.id, r.name) for r in rows]

    def action_search(self) -> None:
        self.query_one("#customer-search", Input).focus()

    def action_back(self) -> None:
        self.app.pop_screen()


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
