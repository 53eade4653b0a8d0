"""Run detail: progress, counts, and the recipients as a window paged from the database."""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, ProgressBar, Static

from core.delivery.runs import RecipientView, RunInfo, get_run, recipient_page, request_stop
from core.delivery.states import COMPLETED, ENDED, RECIPIENT_STATES, RESTARTABLE
from tui.console.confirm import Confirm
from tui.console.formatting import clip, fit_widths, hhmmss, styled
from tui.console.live import LiveScreen
from tui.console.widgets import SearchInput

FILTERS: tuple[str | None, ...] = (None, *RECIPIENT_STATES)
PAGE = 50  # rows per window: the table never holds more than this
SEARCH_COUNT_SECONDS = 3.0  # a search's match count is made again after this long


# name → (least, natural) width; the reply takes what is left. Under 100 columns
# the position column gives way (the line under the table still says where it is).
FLEXIBLE_COLUMNS = {"Address": (12, 34), "Document": (10, 26), "Reply": (12, 40)}
COLUMN_ORDER = ("#", "Customer", "Address", "Document", "State", "Time", "Reply")
NARROW = 100


def fixed_columns(width: int) -> dict[str, int]:
    fixed = {"#": 6, "Customer": 10, "State": 8, "Time": 8}
    if width < NARROW:
        del fixed["#"]
    return fixed


def document_cell(view: RecipientView, width: int) -> str:
    """The document and its label; a draft numbered since the run planned it stands out."""
    if view.document_id is None:
        return "-"
    if view.shown_label != view.label:  # "Concept → 2026-0042"
        return f"{view.document_id} [b yellow]{view.shown_label}[/]"
    return clip(f"{view.document_id} {view.shown_label}", width)


def column_widths(width: int) -> dict[str, int]:
    """Columns sized to the terminal (less the scrollbar and the table's edge)."""
    return fit_widths(width - 3, fixed_columns(width), FLEXIBLE_COLUMNS)


class RunScreen(LiveScreen):
    AUTO_FOCUS = "#recipients"
    PURPOSE = (
        "One run: progress, counts, and every recipient with its state, SMTP reply and time. "
        "Filter by state, search, stop, restart, re-send unknown recipients."
    )
    BINDINGS = [
        Binding("escape", "back", "Back", id="run.back"),
        Binding("f", "next_filter", "Filter", id="run.filter"),
        Binding("slash", "search", "Search", key_display="/", id="run.search"),
        Binding("x", "stop", "Stop", id="run.stop"),
        Binding("R", "restart", "Restart", key_display="R", id="run.restart"),
        Binding("U", "resend_unknown", "Re-send unknown", key_display="U", id="run.resend"),
        Binding("enter", "customer", "Why?", id="run.why"),
        Binding("m", "message", "Message", id="run.message"),
        Binding("j", "cursor_down", "Down", show=False, id="run.down"),
        Binding("k", "cursor_up", "Up", show=False, id="run.up"),
        Binding("pagedown,space", "next_page", "Next page", show=False, id="run.next"),
        Binding("pageup,b", "previous_page", "Previous page", show=False, id="run.previous"),
        Binding("g", "first_page", "Top", show=False, id="run.top"),
        Binding("G", "last_page", "Bottom", show=False, id="run.bottom"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.filter_index = 0
        self.search_text = ""
        self.window_start = 0
        self.matching = 0
        self.rows: list[RecipientView] = []
        self.run_state = ""
        self.run: RunInfo | None = None  # as the last poll read it
        self.widths: dict[str, int] = {}
        # (search, filter) → (when counted, how many matched)
        self.search_counts: dict[tuple[str, int], tuple[float, int]] = {}

    def compose(self) -> ComposeResult:
        yield Static(f"msgrun · run {self.run_id}", id="title-bar")
        yield Static("", id="run-summary", classes="summary")
        yield ProgressBar(id="progress", show_eta=False)
        yield Static("", id="run-counts", classes="summary")
        yield SearchInput(placeholder="search address, customer, document…", id="search")
        table: DataTable[str] = DataTable(id="recipients", cursor_type="row", zebra_stripes=True)
        self._add_columns(table, self.app.size.width)
        yield table
        yield Static("", id="window", classes="hint")
        yield Footer()

    def _add_columns(self, table: DataTable[str], width: int) -> None:
        """Columns sized to the terminal: at 80 columns every one is still in view."""
        self.widths = column_widths(width)
        for label in COLUMN_ORDER:
            if label in self.widths:
                table.add_column(label, width=self.widths[label], key=label)

    def on_resize(self) -> None:
        table = self.query_one("#recipients", DataTable)
        if column_widths(self.app.size.width) != self.widths:
            table.clear(columns=True)
            self._add_columns(table, self.app.size.width)
            if self.run is not None:
                self.show((self.run, self.rows, self.matching))

    @property
    def states(self) -> list[str] | None:
        state = FILTERS[self.filter_index]
        return [state] if state else None

    def load(self) -> Any:
        run = get_run(self.console.database, self.run_id)
        # How many match comes from the run's counters unless a search is on;
        # a search's count is made again at most every few seconds.
        matching: int | None = run.total
        if self.states:
            matching = sum(run.counts[state] for state in self.states)
        elif self.search_text:
            key = (self.search_text, self.filter_index)
            cached = self.search_counts.get(key)
            fresh = cached is not None and time.monotonic() - cached[0] < SEARCH_COUNT_SECONDS
            matching = cached[1] if fresh and cached is not None else None
        counted = matching is None
        rows, matching = recipient_page(
            self.console.database,
            self.run_id,
            states=self.states,
            search=self.search_text or None,
            offset=self.window_start,
            limit=PAGE,
            matching=matching,
        )
        if counted:
            self.search_counts[(self.search_text, self.filter_index)] = (time.monotonic(), matching)
        return run, rows, matching

    def show(self, data: Any) -> None:
        run, rows, matching = data
        self.rows, self.matching, self.run_state = rows, matching, run.state
        self.run = run
        to_send = run.total - run.counts["excluded"]
        done = run.counts["sent"] + run.counts["failed"] + run.counts["unknown"]
        summary = (
            f"{run.definition_id} · {styled(run.state)} · planned for "
            f"{run.planned_at:%Y-%m-%d %H:%M} UTC · started by {run.started_by}"
        )
        if run.error:
            summary += f"\n[red]{run.error}[/]"
        self.query_one("#run-summary", Static).update(summary)
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=max(to_send, 1), progress=done)
        counts = "  ".join(f"{styled(state)} {run.counts[state]}" for state in RECIPIENT_STATES)
        self.query_one("#run-counts", Static).update(counts)
        table = self.query_one("#recipients", DataTable)
        row = table.cursor_row
        table.clear()
        for view in rows:
            reply = f"{view.smtp_code} {view.smtp_reply}" if view.smtp_code else (view.error or "")
            if view.state == "excluded" and view.reasons:
                reply = ", ".join(r["code"] for r in view.reasons)
            cells = {
                "#": str(view.position + 1),
                "Customer": view.customer_id,
                "Address": clip(view.address or "(none)", self.widths["Address"]),
                "Document": document_cell(view, self.widths["Document"]),
                "State": styled(view.state),
                "Time": hhmmss(view.updated_at),
                "Reply": clip(reply, self.widths["Reply"]),
            }
            table.add_row(
                *(cells[c] for c in COLUMN_ORDER if c in self.widths), key=str(view.position)
            )
        if rows:
            table.move_cursor(row=min(row, len(rows) - 1))
        shown = FILTERS[self.filter_index] or "all states"
        search = f" · search {self.search_text!r}" if self.search_text else ""
        first = self.window_start + 1 if rows else 0
        self.query_one("#window", Static).update(
            f"{first}-{self.window_start + len(rows)} of {matching} · {shown}{search}"
        )

    # -- moving -----------------------------------------------------------------------

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_class("visible"):
            search.remove_class("visible")
            self.query_one("#recipients", DataTable).focus()
            return
        self.app.pop_screen()

    def action_cursor_down(self) -> None:
        self.query_one("#recipients", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#recipients", DataTable).action_cursor_up()

    def _move(self, offset: int) -> None:
        self.window_start = max(0, min(offset, max(0, self.matching - PAGE)))
        self.console.refresh_screen()

    def action_next_page(self) -> None:
        self._move(self.window_start + PAGE)

    def action_previous_page(self) -> None:
        self._move(self.window_start - PAGE)

    def action_first_page(self) -> None:
        self._move(0)

    def action_last_page(self) -> None:
        self._move(self.matching - PAGE)

    def action_next_filter(self) -> None:
        self.filter_index = (self.filter_index + 1) % len(FILTERS)
        self.window_start = 0
        self.console.refresh_screen()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.add_class("visible")
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.search_text = event.value.strip()
        self.window_start = 0
        event.input.remove_class("visible")
        self.query_one("#recipients", DataTable).focus()
        self.console.refresh_screen()

    # -- acting on the run ------------------------------------------------------------

    def action_stop(self) -> None:
        if self.run_state in ENDED:
            self.notify(f"run {self.run_id} has ended ({self.run_state}); nothing to stop")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                request_stop(self.console.database, self.run_id, self.console.clock)
                self.notify(f"stop of run {self.run_id} recorded")
                self.console.refresh_screen()

        self.app.push_screen(
            Confirm(
                f"Stop run {self.run_id}?",
                "Messages in flight finish; the rest stays pending and is sent by a "
                "restart. Sent messages are not recalled.",
            ),
            answered,
        )

    def _restart(self, resend_unknown: bool) -> None:
        self.console.launch(self.console.db_url, self.run_id, resend_unknown=resend_unknown)
        self.notify(f"run {self.run_id} restarted")
        self.console.refresh_screen()

    def action_restart(self) -> None:
        if self.run_state == COMPLETED:
            self.notify(f"run {self.run_id} is completed: nothing to restart")
            return
        if self.run_state not in RESTARTABLE:
            self.notify(f"run {self.run_id} is {self.run_state}: it cannot be restarted now")
            return
        self.app.push_screen(
            Confirm(
                f"Restart run {self.run_id}?",
                "Sends what was not sent: pending, due retries, due held. Never a sent "
                "recipient; `unknown` ones only with U.",
            ),
            lambda yes: self._restart(False) if yes else None,
        )

    def action_resend_unknown(self) -> None:
        unknown = self.run.counts["unknown"] if self.run is not None else 0
        if not unknown:
            self.notify("no recipient of this run is unknown")
            return
        self.app.push_screen(
            Confirm(
                f"Re-send the {unknown} unknown recipients of run {self.run_id}?",
                "Their delivering process stopped while sending: they may already have "
                "the message. Each keeps its Message-ID, so a receiving system can spot "
                "a duplicate.",
            ),
            lambda yes: self._restart(True) if yes else None,
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table takes the key itself)."""
        event.stop()
        self.action_customer()

    def action_message(self) -> None:
        from tui.console.message_screen import MessageScreen

        table = self.query_one("#recipients", DataTable)
        if self.rows and table.cursor_row < len(self.rows):
            view = self.rows[table.cursor_row]
            self.app.push_screen(MessageScreen(self.run_id, view.position, view.message_id))

    def action_customer(self) -> None:
        from tui.console.customer_screen import CustomerScreen

        table = self.query_one("#recipients", DataTable)
        if self.run is not None and self.rows and table.cursor_row < len(self.rows):
            view = self.rows[table.cursor_row]
            self.app.push_screen(
                CustomerScreen(
                    view.customer_id, definition=self.run.definition_id, at=self.run.planned_at
                )
            )
