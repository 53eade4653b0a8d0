"""Bounces: the reports read back (bounces, complaints, delays, auto-replies), unmatched too;
``enter`` shows one report's raw message and how msgrun read it."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from core.bounces.queries import OutcomeRow, ReportView
from core.views.bounces import BouncesOverview, bounces_overview, report_detail, what
from tui.console import places
from tui.console.formatting import Column, clip, clip_id, fit_columns, place_columns, plural
from tui.console.live import LiveScreen, TableScreen, first_and_last

# What an operator reads a report by stays at 80 columns: when, what, the status
# and the address; the run, the customer and how it was matched give way (the line
# under the table shows them for the highlighted row).
COLUMNS: list[Column] = [
    ("Report", 6, 6),
    ("Date (UTC)", 10, 16),
    ("Outcome", 11, 12),
    ("Status", 6, 6),
    ("Address", 20, 34),
    ("Run", 4, 5),
    ("Customer", 8, 12),
    ("Matched by", 10, 10),
]
GIVE_WAY = ["Matched by", "Report", "Customer", "Run"]
OUTCOME_STYLE = {
    "bounce hard": "red",
    "bounce soft": "yellow",
    "complaint": "bold red",
    "delay": "cyan",
    "auto_reply": "dim",
    "ignored": "dim",
}


def column_widths(width: int) -> dict[str, int]:
    # The date grows to show the time first; the address takes what is left.
    grow = ["Date (UTC)", "Outcome", "Run", "Customer", "Address"]
    return fit_columns(width - 3, COLUMNS, GIVE_WAY, grow=grow)


def tied(row: OutcomeRow) -> str:
    """Whom a row is about: ``run 7 · C001 · by message_id``, ``unmatched`` or ``-``."""
    if row.run is not None:
        return f"run {row.run} · {row.customer} · by {row.matched_by}"
    return "unmatched" if row.type is not None else "-"


class BouncesScreen(TableScreen[OutcomeRow, BouncesOverview]):
    TABLE = "#bounces"
    AUTO_FOCUS = "#bounces"
    PURPOSE = (
        "The reports read back by msgrun bounces read, newest first: bounces (hard, soft), "
        "complaints, delays and auto-replies, with the recipient each was tied to (run, "
        "customer, how it was matched) or unmatched; f shows the unmatched only. Enter shows "
        "the raw report and how it was read."
    )
    BINDINGS = [
        Binding("escape", "back", "Back", id="bounces.back"),
        Binding("enter", "open", "Report", id="bounces.open"),
        Binding("f", "filter", "All/unmatched", id="bounces.filter"),
        Binding("j", "cursor_down", "Down", show=False, id="bounces.down"),
        Binding("k", "cursor_up", "Up", show=False, id="bounces.up"),
        *first_and_last("bounces"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.widths: dict[str, int] = {}
        self.unmatched_only = False

    def compose(self) -> ComposeResult:
        yield Static("msgrun · bounces", id="title-bar")
        yield Static("", id="bounces-summary", classes="summary")
        table: DataTable[str] = DataTable(id="bounces", cursor_type="row", zebra_stripes=True)
        self.widths = place_columns(table, COLUMNS, column_widths(self.app.size.width))
        yield table
        yield Static("", id="bounce-line", classes="hint")
        yield Footer()

    def on_resize(self) -> None:
        widths = column_widths(self.app.size.width)
        if widths != self.widths:
            table = self.query_one("#bounces", DataTable)
            self.widths = place_columns(table, COLUMNS, widths, again=True)
            self._paint()

    def load(self) -> BouncesOverview:
        return bounces_overview(self.console.database, unmatched=self.unmatched_only)

    def show(self, data: BouncesOverview) -> None:
        overview = data
        self.items = overview.rows
        self._paint()
        if overview.reports:
            shown = f" — showing the newest {len(overview.rows):,} rows" if overview.more else ""
            only = " · showing the unmatched only (f: all)" if self.unmatched_only else ""
            summary = (
                f"{plural(overview.reports, 'report')} · {overview.unmatched:,} unmatched"
                f"{only}{shown}"
            )
        else:
            summary = (
                "No reports yet: msgrun bounces read reads them from a Maildir, a file, "
                "standard input or IMAP."
            )
        self.query_one("#bounces-summary", Static).update(escape(summary))

    def _paint(self) -> None:
        table = self.query_one("#bounces", DataTable)
        row = table.cursor_row
        table.clear()
        w = self.widths
        for item in self.items:
            outcome = what(item)
            style = OUTCOME_STYLE.get(outcome, "white")
            cells = {
                "Report": str(item.report),
                "Date (UTC)": item.reported_at.strftime(
                    "%Y-%m-%d %H:%M" if w.get("Date (UTC)", 0) >= 16 else "%Y-%m-%d"
                ),
                "Outcome": f"[{style}]{escape(clip(outcome, w.get('Outcome', 0)))}[/]",
                "Status": item.status or "-",
                "Address": escape(clip(item.address or "-", w.get("Address", 0))),
                "Run": str(item.run) if item.run is not None else "-",
                "Customer": escape(clip_id(item.customer or "-", w.get("Customer", 0))),
                "Matched by": item.matched_by or ("unmatched" if item.type else "-"),
            }
            table.add_row(*(cells[name] for name, _, _ in COLUMNS if name in w))
        if self.items:
            table.move_cursor(row=min(row, len(self.items) - 1))
        self._line()

    def on_data_table_row_highlighted(self) -> None:
        self._line()

    def _line(self) -> None:
        """The highlighted row in one line, with what the columns that gave way would show."""
        item = self.selected()
        text = f"report {item.report} · {item.kind} · {tied(item)}" if item is not None else ""
        self.query_one("#bounce-line", Static).update(escape(clip(text, self.app.size.width - 2)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table takes the key itself)."""
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        item = self.selected()
        if item is not None:
            self.console.visit(places.Report(item.report))

    def action_filter(self) -> None:
        """Every report, or only the outcomes tied to no recipient."""
        self.unmatched_only = not self.unmatched_only
        self.console.refresh_screen()

    def action_back(self) -> None:
        self.app.pop_screen()


class ReportScreen(LiveScreen[ReportView | None]):
    PURPOSE = (
        "One report as msgrun bounces show prints it: where it was read, why msgrun read it "
        "as it did, each outcome and whom it was tied to; then the raw message as it came."
    )
    BINDINGS = [Binding("escape", "back", "Back", id="report.back")]

    def __init__(self, report_id: int) -> None:
        super().__init__()
        self.report_id = report_id
        self.shown = False

    def compose(self) -> ComposeResult:
        yield Static(f"msgrun · report {self.report_id}", id="title-bar")
        with VerticalScroll(classes="scroll", id="report-scroll"):
            yield Static("", id="report-how")
            yield Static("", id="report-raw")
        yield Footer()

    def load(self) -> ReportView | None:
        return None if self.shown else report_detail(self.console.database, self.report_id)

    def show(self, data: ReportView | None) -> None:
        if data is None:
            return
        view = data
        self.shown = True
        self.query_one("#report-how", Static).update(
            "\n".join(["[b]How msgrun read it[/b]", *map(escape, view.how_read()), ""])
        )
        self.query_one("#report-raw", Static).update(
            "[b]The raw report[/b]\n" + escape(view.raw_text())
        )
        self.query_one("#report-scroll").focus()

    def action_back(self) -> None:
        self.app.pop_screen()
