"""Runs: every run, live — state, progress, rate, ETA, counts by state."""

from __future__ import annotations

import time

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from core.states import FAILED, HELD, RUNNING, SENT, UNKNOWN
from core.views.run_actions import restart_offered_in_list
from core.views.runs import RunProgress, RunsOverview, runs_overview
from tui.console import places
from tui.console.formatting import (
    Column,
    clip,
    duration,
    fit_columns,
    place_columns,
    plural,
    styled,
)
from tui.console.live import TableScreen, first_and_last
from tui.console.restarting import confirm_restart

# What an operator decides by stays in view at 80 columns: the run, its state,
# progress, sent, failed and unknown. The others give way in this order (the
# line under the table still shows them for the highlighted run).
COLUMNS: list[Column] = [
    ("Run", 5, 9),  # a follow-up shows the run it follows: "8 ↳7"
    ("Definition", 10, 18),
    ("State", 23, 23),
    ("Progress", 11, 13),
    ("Sent", 6, 7),
    ("Failed", 6, 6),
    ("Unknown", 7, 7),
    ("Held", 6, 6),
    ("Rate", 8, 8),
    ("ETA", 7, 7),
]
GIVE_WAY = ["ETA", "Rate", "Held", "Definition"]
NARROW_BELOW = 100  # columns under which the footer has no room to spare


def column_widths(width: int) -> dict[str, int]:
    """Columns sized to the terminal (less the scrollbar and the table's edge)."""
    return fit_columns(width - 3, COLUMNS, GIVE_WAY)


def state_cell(run: RunProgress) -> str:
    """The run's state; ``running (interrupted)`` when no process delivers it any more."""
    if run.interrupted:
        return f"{styled(run.state)} [b red](interrupted)[/]"
    return styled(run.state)


def run_cell(run: RunProgress) -> str:
    """The run's id; a follow-up's with the run it follows (``8 ↳7``)."""
    follows = run.run.follow_up_of
    return str(run.id) if follows is None else f"{run.id} [cyan]↳{follows}[/]"


class RunsScreen(TableScreen[RunProgress, RunsOverview]):
    TABLE = "#runs"
    AUTO_FOCUS = "#runs"
    PURPOSE = (
        "Every run, live: state, progress, rate, ETA and counts by state. b shows the bounce "
        "and complaint reports read back."
    )
    BINDINGS = [
        Binding("enter", "open", "Open run", id="runs.open"),
        Binding("n", "new_run", "New run", id="runs.new"),
        Binding("c", "customer", "Customer", id="runs.customer"),
        Binding("p", "profiles", "SMTP profiles", id="runs.profiles"),
        Binding("t", "routines", "Routines", id="runs.routines"),
        # Offered while the highlighted run is interrupted (check_action).
        Binding("R", "restart", "Restart", key_display="R", id="runs.restart"),
        # Not in the footer: at 80 columns it would push `? Help` out; help and palette list it.
        Binding("b", "bounces", "Bounces", show=False, id="runs.bounces"),
        Binding("j", "cursor_down", "Down", show=False, id="runs.down"),
        Binding("k", "cursor_up", "Up", show=False, id="runs.up"),
        *first_and_last("runs"),
    ]

    def __init__(self) -> None:
        super().__init__()
        # run id → (monotonic time, messages done) of the previous poll, for the rate.
        self.previous: dict[int, tuple[float, int]] = {}
        self.rates: dict[int, float] = {}
        self.widths: dict[str, int] = {}

    @property
    def runs(self) -> list[RunProgress]:
        return self.items

    def compose(self) -> ComposeResult:
        yield Static("msgrun · runs", id="title-bar")
        yield Static("", id="runs-summary", classes="summary")
        table: DataTable[str] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        self.widths = place_columns(table, COLUMNS, column_widths(self.app.size.width))
        yield table
        yield Static("", id="run-line", classes="hint")
        yield Footer()

    def on_resize(self) -> None:
        widths = column_widths(self.app.size.width)
        if widths != self.widths:
            table = self.query_one("#runs", DataTable)
            self.widths = place_columns(table, COLUMNS, widths, again=True)
            self._paint()

    def load(self) -> RunsOverview:
        return runs_overview(self.console.database, now=self.console.clock.now())

    def show(self, data: RunsOverview) -> None:
        overview = data
        self.items = overview.runs
        now = time.monotonic()
        for run in overview.runs:
            before = self.previous.get(run.id)
            if before is not None and now > before[0] and run.done >= before[1]:
                rate = (run.done - before[1]) / (now - before[0])
                self.rates[run.id] = 0.7 * self.rates.get(run.id, rate) + 0.3 * rate
            self.previous[run.id] = (now, run.done)
        self._paint()
        runs, definitions = overview.runs, overview.definitions
        interrupted = (
            f"[b red]{overview.interrupted} interrupted[/] · " if overview.interrupted else ""
        )
        summary = (
            f"{plural(len(runs), 'run')} · {overview.running} running · {interrupted}"
            f"{plural(definitions, 'definition')}"
            if runs
            else f"No runs yet. {plural(definitions, 'definition')}: press [b]n[/b] to plan "
            "one and start it."
        )
        self.query_one("#runs-summary", Static).update(summary)

    def _rate_and_eta(self, run: RunProgress) -> tuple[str, str]:
        # An interrupted run sends nothing: no rate, no ETA.
        rate = self.rates.get(run.id) if run.state == RUNNING and not run.interrupted else None
        eta = (run.deliverable - run.done) / rate if rate else None
        return (f"{rate:.1f}/s" if rate else "-"), (duration(eta) if eta else "-")

    def _paint(self) -> None:
        table = self.query_one("#runs", DataTable)
        row = table.cursor_row
        table.clear()
        for run in self.items:
            rate, eta = self._rate_and_eta(run)
            cells = {
                "Run": run_cell(run),
                "Definition": clip(run.run.definition_id, self.widths.get("Definition", 0)),
                "State": state_cell(run),
                "Progress": f"{run.done}/{run.deliverable}",
                "Sent": str(run.count(SENT)),
                "Failed": str(run.count(FAILED)),
                "Unknown": str(run.count(UNKNOWN)),
                "Held": str(run.count(HELD)),
                "Rate": rate,
                "ETA": eta,
            }
            table.add_row(
                *(cells[name] for name, _, _ in COLUMNS if name in self.widths), key=str(run.id)
            )
        if self.items:
            table.move_cursor(row=min(row, len(self.items) - 1))
        self._run_line()

    def on_data_table_row_highlighted(self) -> None:
        self._run_line()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "restart":
            run = self.selected()
            return run is not None and restart_offered_in_list(run)
        return True

    def action_restart(self) -> None:
        run = self.selected()
        if run is not None and restart_offered_in_list(run):
            confirm_restart(self, run.id)

    def _run_line(self) -> None:
        """The highlighted run in one line, with what the columns that gave way would show."""
        run = self.selected()
        text = ""
        if run is not None and run.interrupted:
            text = f"run {run.id} is interrupted: no process delivers it any more · R restarts it"
        elif run is not None:
            rate, eta = self._rate_and_eta(run)
            of = run.run.follow_up_of
            follows = f" (follows up run {of})" if of is not None else ""
            text = (
                f"run {run.id}{follows} · {run.run.definition_id} · held {run.count('held')} · "
                f"{rate} · ETA {eta} · by {run.run.started_by}"
            )
        self.query_one("#run-line", Static).update(escape(clip(text, self.app.size.width - 2)))
        self._footer()

    def _footer(self) -> None:
        """Restart is offered while the highlighted run is interrupted; below 100 columns
        the footer then closes up and leaves the palette's key to the help (?), so that
        every key still fits."""
        run = self.selected()
        squeezed = (
            run is not None and restart_offered_in_list(run) and self.app.size.width < NARROW_BELOW
        )
        footer = self.query_one(Footer)
        footer.compact, footer.show_command_palette = squeezed, not squeezed
        self.refresh_bindings()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table takes the key itself)."""
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        run = self.selected()
        if run is not None:
            self.console.visit(places.Run(run.id))

    def action_new_run(self) -> None:
        self.console.visit(places.Definitions())

    def action_customer(self) -> None:
        self.console.visit(places.Customer())

    def action_routines(self) -> None:
        self.console.visit(places.Routines())

    def action_bounces(self) -> None:
        self.console.visit(places.Bounces())

    def action_profiles(self) -> None:
        self.console.visit(places.Profiles())
