"""Runs: every run, live — state, progress, rate, ETA, counts by state."""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from core.delivery.runs import RunInfo, list_runs
from core.planner.load import load_definitions
from tui.console.formatting import duration, styled
from tui.console.live import TableScreen

DONE = ("sent", "failed", "unknown")


class RunsScreen(TableScreen[RunInfo]):
    TABLE = "#runs"
    AUTO_FOCUS = "#runs"
    PURPOSE = "Every run, live: state, progress, rate, ETA and counts by state."
    BINDINGS = [
        Binding("enter", "open", "Open run", id="runs.open"),
        Binding("n", "new_run", "New run", id="runs.new"),
        Binding("c", "customer", "Customer", id="runs.customer"),
        Binding("p", "profiles", "SMTP profiles", id="runs.profiles"),
        Binding("t", "routines", "Routines", id="runs.routines"),
        Binding("j", "cursor_down", "Down", show=False, id="runs.down"),
        Binding("k", "cursor_up", "Up", show=False, id="runs.up"),
    ]

    def __init__(self) -> None:
        super().__init__()
        # run id → (monotonic time, messages done) of the previous poll, for the rate.
        self.previous: dict[int, tuple[float, int]] = {}
        self.rates: dict[int, float] = {}

    @property
    def runs(self) -> list[RunInfo]:
        return self.items

    def compose(self) -> ComposeResult:
        yield Static("msgrun · runs", id="title-bar")
        yield Static("", id="runs-summary", classes="summary")
        table: DataTable[str] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        # Fixed widths: live refreshes never make the columns jump.
        for label, width in (
            ("Run", 5),
            ("Definition", 18),
            ("State", 23),
            ("Progress", 11),
            ("Sent", 7),
            ("Failed", 6),
            ("Unknown", 7),
            ("Held", 6),
            ("Rate", 8),
            ("ETA", 7),
        ):
            table.add_column(label, width=width)
        yield table
        yield Footer()

    def load(self) -> Any:
        runs = list_runs(self.console.database)
        with self.console.database.connect() as connection:
            definitions = len(load_definitions(connection))
        return runs, definitions

    def show(self, data: Any) -> None:
        runs, definitions = data
        self.items = runs
        now = time.monotonic()
        table = self.query_one("#runs", DataTable)
        row = table.cursor_row
        table.clear()
        for run in runs:
            to_send = run.total - run.counts["excluded"]
            done = sum(run.counts[s] for s in DONE)
            before = self.previous.get(run.id)
            if before is not None and now > before[0] and done >= before[1]:
                rate = (done - before[1]) / (now - before[0])
                self.rates[run.id] = 0.7 * self.rates.get(run.id, rate) + 0.3 * rate
            self.previous[run.id] = (now, done)
            rate = self.rates.get(run.id) if run.state == "running" else None
            eta = (to_send - done) / rate if rate else None
            table.add_row(
                str(run.id),
                run.definition_id,
                styled(run.state),
                f"{done}/{to_send}",
                str(run.counts["sent"]),
                str(run.counts["failed"]),
                str(run.counts["unknown"]),
                str(run.counts["held"]),
                f"{rate:.1f}/s" if rate else "-",
                duration(eta) if eta else "-",
                key=str(run.id),
            )
        if runs:
            table.move_cursor(row=min(row, len(runs) - 1))
        summary = (
            f"{len(runs)} runs · {sum(r.state == 'running' for r in runs)} running · "
            f"{definitions} definitions"
            if runs
            else f"No runs yet. {definitions} definitions: press [b]n[/b] to plan one and start it."
        )
        self.query_one("#runs-summary", Static).update(summary)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table takes the key itself)."""
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        from tui.console.run_screen import RunScreen

        run = self.selected()
        if run is not None:
            self.app.push_screen(RunScreen(run.id))

    def action_new_run(self) -> None:
        from tui.console.plan_screen import DefinitionsScreen

        self.app.push_screen(DefinitionsScreen())

    def action_customer(self) -> None:
        from tui.console.customer_screen import CustomerScreen

        self.app.push_screen(CustomerScreen())

    def action_routines(self) -> None:
        from tui.console.routines_screen import RoutinesScreen

        self.app.push_screen(RoutinesScreen())

    def action_profiles(self) -> None:
        from tui.console.profiles_screen import ProfilesScreen

        self.app.push_screen(ProfilesScreen())
