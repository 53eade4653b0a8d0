"""Run detail: progress, counts, and the recipients as a window paged from the database."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Input, ProgressBar, Sparkline, Static

from core.delivery.starting import request_stop
from core.follow_up import Preview, preview_follow_up, start_follow_up
from core.run_info import RunInfo, get_run
from core.states import (
    ENDED,
    EXCLUDED,
    FAILED,
    PENDING,
    RECIPIENT_STATES,
    RUNNING,
    SENT,
    UNKNOWN,
)
from core.views.deliveries import reply_words
from core.views.export_rows import OUTCOME_FILTERS, Selection
from core.views.recipients import RecipientView
from core.views.run_actions import (
    RunAction,
    can_follow_up,
    can_stop,
    offered,
    unknown_to_resend,
)
from core.views.runs import (
    RunProgress,
    RunWindow,
    SendRate,
    restart_check,
    run_window,
    send_rate,
    settled_parts,
)
from tui.console import places
from tui.console.charts import SplitBar, parts_legend
from tui.console.confirm import Confirm
from tui.console.export_dialog import ExportDialog
from tui.console.formatting import (
    Column,
    clip,
    clip_id,
    fit_columns,
    header_line,
    hhmmss,
    plural,
    row_line,
    show_text,
    styled,
)
from tui.console.live import LiveScreen
from tui.console.restarting import confirm_restart, launch_restart
from tui.console.starting import start_run_and_open
from tui.console.widgets import SearchInput
from tui.console.window_table import WindowTable

# `f` steps through every state, then every outcome a report can give.
FILTERS: tuple[str | None, ...] = (None, *RECIPIENT_STATES, *OUTCOME_FILTERS)
OUTCOME_STYLE = {
    "bounce_hard": "bold red",
    "bounce_soft": "red",
    "complaint": "bright_magenta",
    "delay": "yellow",
}
# An outcome in at most 8 cells, for a narrow state column.
OUTCOME_SHORT = {
    "bounce_hard": "bounced",
    "bounce_soft": "soft bnc",
    "complaint": "spam",
    "delay": "delayed",
}
# The counts line names the outcomes in words.
OUTCOME_WORDS = {
    "bounce_hard": "hard bounces",
    "bounce_soft": "soft bounces",
    "complaint": "complaints",
    "delay": "delays",
}
# Rows per window: what the table shows (a screenful: space shows the next), so that
# a key never makes the console read, lay out and measure rows it cannot show.
LEAST_PAGE = 5
ABOVE_AND_BELOW = 10  # rows of the screen that are not the table's, about
SEARCH_COUNT_SECONDS = 3.0  # a search's match count is made again after this long
RATE_SECONDS = 5.0  # a running run's sending rate is read again after this long


# name, least and natural width. At 80 columns the state and enough of the
# address to tell two apart stay; the position, then the time, then the
# document give way (the line under the table still says where it is, and
# `m` shows a recipient in full). A wide terminal shows every column.
COLUMNS: list[Column] = [
    ("#", 6, 6),
    ("Customer", 8, 10),
    ("Address", 24, 34),
    ("Document", 12, 26),
    ("State", 8, 20),
    ("Time", 8, 8),
    ("Reply", 12, 40),
]
GIVE_WAY = ["#", "Time", "Document"]
# who gets the room; the reply the rest
GROW = ["Address", "Document", "Customer", "State", "Reply"]


def document_cell(view: RecipientView, width: int) -> str:
    """The document and its label; a draft numbered since the run planned it stands out."""
    if view.document_id is None:
        return "-"
    if view.shown_label != view.label:  # "Concept → 2026-0042"
        return f"{escape(view.document_id)} [b yellow]{escape(view.shown_label)}[/]"
    return escape(clip(f"{view.document_id} {view.shown_label}", width))


def reply_cell(view: RecipientView) -> str:
    if view.state == EXCLUDED and view.reasons:
        return ", ".join(r["code"] for r in view.reasons)
    return reply_words(view.smtp_code, view.smtp_reply, view.error)


def state_cell(state: str, outcome: str | None, width: int) -> str:
    """``sent · bounce_hard``; in a narrow column the outcome alone (``bounced``)."""
    if outcome is None:
        return styled(state)
    style = OUTCOME_STYLE.get(outcome, "white")
    if len(state) + 3 + len(outcome) <= width:
        return f"{styled(state)} · [{style}]{outcome}[/]"
    return f"[{style}]{OUTCOME_SHORT.get(outcome, outcome)[:width]}[/]"


def column_widths(width: int) -> dict[str, int]:
    """Columns sized to the terminal (less the scrollbar and the table's edge)."""
    return fit_columns(width - 3, COLUMNS, GIVE_WAY, GROW)


WIDE = 100  # columns from which the footer has room to spare

# The run's actions its state decides (core.views.run_actions.offered).
STATE_ACTIONS = frozenset(RunAction)

SearchKey = tuple[str, int]  # (search, filter)


@dataclass(frozen=True)
class RateRead:
    """The sending rate, read by one load."""

    rate: SendRate
    at: float  # monotonic time it was read
    final: bool  # read after the run had ended: it changes no more


@dataclass(frozen=True)
class RunData:
    """What one load of the run screen read (in a worker thread)."""

    window: RunWindow
    loaded_last: bool  # the last window was asked for (its offset is known only now)
    rate: RateRead | None  # None: not read this time (the last one still holds)
    # A search's match count made this time: (search, filter), (when, how many).
    counted: tuple[SearchKey, tuple[float, int]] | None


def interrupted_words(progress: RunProgress) -> str:
    """Why an interrupted run sends nothing, and what to do."""
    who = ", ".join(holder.words() for holder in progress.holding.held_by)
    left = f" ({who} delivered it, and no longer does)" if who else ""
    return f"interrupted: no process delivers this run any more{left} · R restarts it"


def waiting_words(progress: RunProgress) -> str | None:
    """What a waiting run waits for, and whether anything will send it then (one line
    at 80 columns: the footer has R, which restarts it here)."""
    waits = progress.waiting
    if waits is None:
        return None
    left = f"{progress.deliverable - progress.done:,} to send"
    until = f"until {waits.next_due:%Y-%m-%d %H:%M} UTC ({left})" if waits.next_due else f"({left})"
    if waits.workers:
        who = ", ".join(worker.words() for worker in waits.workers)
        return f"waiting {until}: msgrun worker ({who}) sends them"
    return f"waiting {until}: no msgrun worker is running"


class RunScreen(LiveScreen[RunData]):
    AUTO_FOCUS = "#recipients"
    PURPOSE = (
        "One run: progress, counts, and every recipient with its state, SMTP reply and time. "
        "m shows the recipient under the cursor in full: the whole reply, attempts, times "
        "and its message. Filter by state or by outcome (a bounce, a complaint), search, "
        "stop, restart, re-send unknown recipients. e exports the recipients the filter shows "
        "to a CSV file; F follows the run up: a new run for those that did not get it. The "
        "sparkline is the sending rate (messages a second); a settled run shows one bar: "
        "delivered, bounced, complained, failed, unknown, excluded."
    )
    BINDINGS = [
        Binding("escape", "back", "Back", id="run.back"),
        # m first: at 80 columns the footer still shows where the whole reply is.
        Binding("m", "message", "Detail", id="run.message"),
        Binding("enter", "customer", "Why?", id="run.why"),
        Binding("f", "next_filter", "Filter", id="run.filter"),
        Binding("slash", "search", "Search", key_display="/", id="run.search"),
        Binding("x", "stop", "Stop", id="run.stop"),
        Binding("R", "restart", "Restart", key_display="R", id="run.restart"),
        Binding("U", "resend_unknown", "Re-send unknown", key_display="U", id="run.resend"),
        Binding("e", "export", "Export", id="run.export"),
        Binding("F", "follow_up", "Follow up", key_display="F", id="run.follow_up"),
        # The footer offers what the run's state allows (check_action): at 80 columns
        # it cannot hold every key. A key it does not offer still says why not.
        Binding("x", "why_not('stop')", "", show=False),
        Binding("R", "why_not('restart')", "", show=False),
        Binding("U", "why_not('resend_unknown')", "", show=False),
        Binding("F", "why_not('follow_up')", "", show=False),
        Binding("j", "cursor_down", "Down", show=False, id="run.down"),
        Binding("k", "cursor_up", "Up", show=False, id="run.up"),
        Binding("pagedown,space", "next_page", "Next page", show=False, id="run.next"),
        Binding("pageup,b", "previous_page", "Previous page", show=False, id="run.previous"),
        Binding("g", "first_row", "First recipient", show=False, id="run.top"),
        Binding("G", "last_row", "Last recipient", show=False, id="run.bottom"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.filter_index = 0
        self.search_text = ""
        self.window_start = 0
        # Where the cursor goes once the next window is painted: "first", "last" or None.
        self.cursor_target: str | None = None
        self.want_last = False  # the next load reads the last window
        # Rows a window holds: first a guess from the terminal, then the table's height.
        self.page = max(LEAST_PAGE, self.app.size.height - ABOVE_AND_BELOW)
        self.matching = 0
        self.painted_offset = 0  # where the window on screen starts
        self.rows: list[RecipientView] = []
        self.run_state = ""
        self.run: RunInfo | None = None  # as the last poll read it
        self.progress: RunProgress | None = None  # with who delivers it
        self.widths: dict[str, int] = {}
        self.rate: SendRate | None = None  # the sending rate as last read
        self.rate_read_at = -RATE_SECONDS  # monotonic time it was read
        self.rate_final = False  # read after the run had ended: it changes no more
        self.outcomes: dict[int, str] = {}  # position → outcome, in the window shown
        self.handed_on: dict[int, int] = {}  # position → the follow-up it was handed to
        # (search, filter) → (when counted, how many matched)
        self.search_counts: dict[SearchKey, tuple[float, int]] = {}

    def compose(self) -> ComposeResult:
        yield Static(f"msgrun · run {self.run_id}", id="title-bar")
        yield Static("", id="run-summary", classes="summary")
        yield ProgressBar(id="progress", show_eta=False)
        yield Static("", id="run-counts", classes="summary")
        with Horizontal(id="run-rate"):
            yield Static("rate", id="rate-label")
            yield Sparkline([], id="rate-line", summary_function=max)
            yield Static("", id="rate-peak")
        with Horizontal(id="run-parts"):
            yield SplitBar(id="parts-bar")
            yield Static("", id="parts-legend")
        yield SearchInput(placeholder="search address, customer, document…", id="search")
        table = WindowTable(id="recipients", zebra_stripes=True)
        self.widths = column_widths(self.app.size.width)
        table.set_header(header_line(COLUMNS, self.widths))
        yield table
        yield Static("", id="no-recipients", classes="empty")
        yield Static("", id="window", classes="hint")
        narrow = self.app.size.width < WIDE
        # Below 100 columns the footer closes up and leaves the palette's key to the
        # help (?): every key the run's state offers then fits on the line.
        yield Footer(compact=narrow, show_command_palette=not narrow)

    def _fit_page(self) -> None:
        """The window is as tall as the table (less its header); read again if that changed
        what it holds."""
        table = self.query_one("#recipients", WindowTable)
        if not table.display or table.size.height <= 1:
            return
        page = max(LEAST_PAGE, table.size.height - 1)
        # A window read before the table had its height may hold more rows than fit:
        # read it again at the height (the last window stays the last), so the count
        # under the table says what is shown.
        over = len(self.rows) > page
        if page != self.page or over:
            grew = page > len(self.rows)
            self.page = page
            end = self.painted_offset + len(self.rows)
            if over and self.painted_offset > 0 and end >= self.matching:
                self.want_last = True
            if grew or over:
                self.console.refresh_screen()

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit_page)
        footer, narrow = self.query_one(Footer), self.app.size.width < WIDE
        footer.compact, footer.show_command_palette = narrow, not narrow
        widths = column_widths(self.app.size.width)
        if widths != self.widths:
            self.widths = widths
            self.query_one("#recipients", WindowTable).set_header(header_line(COLUMNS, widths))
            self._paint_rows()

    @property
    def states(self) -> list[str] | None:
        state = FILTERS[self.filter_index]
        return [state] if state and state in RECIPIENT_STATES else None

    @property
    def outcome(self) -> str | None:
        name = FILTERS[self.filter_index]
        return name if name in OUTCOME_FILTERS else None

    @property
    def selection(self) -> Selection:
        """What the filter shows, as an export names it."""
        return Selection(tuple(self.states or ()), (self.outcome,) if self.outcome else ())

    def load(self) -> RunData:
        # How many match comes from the run's counters unless a search is on;
        # a search's count is made again at most every few seconds.
        matching: int | None = None
        key = (self.search_text, self.filter_index)
        if self.search_text:
            cached = self.search_counts.get(key)
            if cached is not None and time.monotonic() - cached[0] < SEARCH_COUNT_SECONDS:
                matching = cached[1]
        counted = self.search_text and matching is None
        last = self.want_last
        window = run_window(
            self.console.database,
            self.run_id,
            states=self.states,
            search=self.search_text or None,
            offset=self.window_start,
            limit=self.page,
            matching=matching,
            last=last,
            outcome=self.outcome,
            now=self.console.clock.now(),
        )
        made = (key, (time.monotonic(), window.matching)) if counted else None
        # The rate costs a scan of the run's sent recipients: read at most every few
        # seconds while the run goes on, once when it has ended, never for a key.
        rate: RateRead | None = None
        ended = window.progress.run.state in ENDED
        # Read once more when the run is seen ended (it may have ended within the
        # seconds since the last read), then never again.
        if not self.rate_final and (ended or time.monotonic() - self.rate_read_at >= RATE_SECONDS):
            rate = RateRead(send_rate(self.console.database, self.run_id), time.monotonic(), ended)
        return RunData(window, last, rate, made)

    def show(self, data: RunData) -> None:
        window, loaded_last = data.window, data.loaded_last
        if data.counted is not None:
            key, counted = data.counted
            self.search_counts[key] = counted
        if data.rate is not None:
            self.rate = data.rate.rate
            self.rate_read_at, self.rate_final = data.rate.at, data.rate.final
        progress: RunProgress = window.progress
        run = progress.run
        if loaded_last:  # the last window's offset is known only now
            self.want_last = False
            self.window_start = window.offset
        self.painted_offset = window.offset
        was = self.offered() if self.run is not None else None
        self.rows, self.matching, self.run_state = window.rows, window.matching, run.state
        self.run, self.progress = run, progress
        if self.offered() != was:  # the footer follows the run's state
            self.refresh_bindings()
        interrupted = " [b red](interrupted)[/]" if progress.interrupted else ""
        summary = (
            f"{escape(run.definition_id)} · {styled(run.state)}{interrupted} · planned "
            f"{run.planned_at:%Y-%m-%d %H:%M} UTC · by {escape(run.started_by)}"
        )
        if progress.interrupted:
            summary += f"\n[b red]{escape(interrupted_words(progress))}[/]"
        waits = waiting_words(progress)
        if waits is not None:
            style = "cyan" if progress.waiting and progress.waiting.workers else "b yellow"
            summary += f"\n[{style}]{escape(waits)}[/]"
        if run.error:
            summary += f"\n[red]{escape(run.error)}[/]"
        show_text(self.query_one("#run-summary", Static), summary)
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=max(progress.deliverable, 1), progress=progress.done)
        # One line at 80 columns: the counts close up when the terminal is narrow.
        wide = self.app.size.width >= 100
        gap = "  " if wide else " "
        # At 80 columns a state with none in it gives way, except those an operator
        # decides by (pending, sent, failed, unknown), so the line never wraps.
        counts = gap.join(
            f"{styled(state)} {run.counts[state]}"
            for state in RECIPIENT_STATES
            if wide or run.counts[state] or state in (PENDING, SENT, FAILED, UNKNOWN)
        )
        reported = [
            f"[{OUTCOME_STYLE[name]}]{OUTCOME_WORDS[name]}[/] {n}"
            for name, n in window.outcome_counts.items()
            if n
        ]
        if reported:
            counts += "\n" + gap.join(reported)
        if run.follow_up_of is not None:
            counts += f"{gap}· follows up run {run.follow_up_of}"
        show_text(self.query_one("#run-counts", Static), counts)
        self.outcomes, self.handed_on = window.outcomes, window.handed_on
        self._paint_pictures(window, self.rate)
        self._paint_rows(loaded_last)

    def _paint_pictures(self, window: RunWindow, rate: SendRate | None) -> None:
        """The sending rate as a sparkline; a settled run's recipients as one split bar."""
        if rate is None:
            rate = SendRate([], 1, None, None)
        line = self.query_one("#rate-line", Sparkline)
        line.data = rate.per_second or [0.0]
        # Nothing sent yet: no line at all (an empty one would draw as a full bar); an
        # interrupted run sends nothing, whatever it sent before.
        interrupted = window.progress.interrupted
        line.display = bool(rate.per_second) and not interrupted
        every = f" ({rate.bucket_seconds}s)" if rate.bucket_seconds > 1 else ""
        peak = f"peak {rate.peak:.1f}/s{every}" if rate.per_second else " nothing sent yet"
        if interrupted:
            peak = " none: interrupted, nothing is being sent"
        show_text(self.query_one("#rate-peak", Static), peak)
        parts = settled_parts(window.progress.run, window.outcome_counts)
        box = self.query_one("#run-parts", Horizontal)
        box.display = parts is not None and sum(parts.values()) > 0
        if parts is not None:
            self.query_one("#parts-bar", SplitBar).show_parts(parts)
            show_text(self.query_one("#parts-legend", Static), parts_legend(parts))

    def _reply(self, view: RecipientView) -> str:
        """The reply, after ``handed on → run N`` for a recipient taken into a follow-up."""
        width = self.widths["Reply"]
        handed = self.handed_on.get(view.position)
        if handed is None:
            return escape(clip(reply_cell(view), width))
        mark = f"handed on → run {handed}"
        if len(mark) > width:  # a narrow column keeps the run it went to
            mark = f"→ run {handed}"
        rest = clip(reply_cell(view), max(0, width - len(mark) - 3))
        text = f"[cyan]{mark}[/]" + (f" · {escape(rest)}" if rest and width > len(mark) + 4 else "")
        return text

    def _paint_rows(self, loaded_last: bool = False) -> None:
        if self.run is None:
            return  # nothing read yet
        rows, start = self.rows, self.painted_offset
        table = self.query_one("#recipients", WindowTable)
        row = table.cursor_row
        columns = [name for name, _, _ in COLUMNS if name in self.widths]
        widths = [self.widths[name] for name in columns]
        lines = []
        for view in rows:
            cells = {
                "#": str(view.position + 1),
                "Customer": escape(clip_id(view.customer_id, self.widths["Customer"])),
                "Address": escape(clip(view.address or "(none)", self.widths["Address"])),
                "Document": document_cell(view, self.widths.get("Document", 0)),
                "State": state_cell(
                    view.state, self.outcomes.get(view.position), self.widths["State"]
                ),
                "Time": hhmmss(view.updated_at),
                "Reply": self._reply(view),
            }
            lines.append(row_line([cells[name] for name in columns], widths))
        if rows:
            # g and G land on the true first and last recipient, once their window is here.
            if self.cursor_target == "first" and start == 0:
                row, self.cursor_target = 0, None
            elif self.cursor_target == "last" and loaded_last:
                row, self.cursor_target = len(rows) - 1, None
        table.set_rows(lines, row)
        shown = FILTERS[self.filter_index] or "all states"
        search = f" · search {self.search_text!r}" if self.search_text else ""
        empty = self.query_one("#no-recipients", Static)
        if rows:
            line = f"{start + 1:,}-{start + len(rows):,} of {self.matching:,}"
            if not table.display:
                table.display = True
                empty.display = False
                if not isinstance(self.focused, Input):
                    table.focus()
        else:
            filtered = self.states or self.outcome or self.search_text
            line = "No recipients match" if filtered else "No recipients"
            empty.update(
                f"{line}: {shown}{escape(search)}. "
                "[b]f[/b] changes the filter, [b]/[/b] the search."
                if filtered
                else "This run has no recipients."
            )
            table.display = False
            empty.display = True
        show_text(self.query_one("#window", Static), f"{line} · {shown}{escape(search)}")
        self.call_after_refresh(self._fit_page)

    # -- moving -----------------------------------------------------------------------

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_class("visible"):
            search.remove_class("visible")
            self.query_one("#recipients", WindowTable).focus()
            return
        self.app.pop_screen()

    def action_cursor_down(self) -> None:
        self.query_one("#recipients", WindowTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#recipients", WindowTable).action_cursor_up()

    def _move(self, offset: int) -> None:
        self.window_start = max(0, min(offset, max(0, self.matching - self.page)))
        self.console.refresh_screen()

    def action_next_page(self) -> None:
        self._move(self.window_start + self.page)

    def action_previous_page(self) -> None:
        self._move(self.window_start - self.page)

    def action_first_row(self) -> None:
        """The cursor on the first recipient of the run (as filtered)."""
        self.cursor_target = "first"
        if self.painted_offset == 0:
            self.query_one("#recipients", WindowTable).move_cursor(row=0)
        self._move(0)

    def action_last_row(self) -> None:
        """The cursor on the last recipient, read from the database however large the run."""
        self.cursor_target = "last"
        self.want_last = True
        self.console.refresh_screen()

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
        self.query_one("#recipients", WindowTable).focus()
        self.console.refresh_screen()

    # -- acting on the run (each confirmed; the write runs off the UI thread) ---------

    def offered(self) -> frozenset[RunAction]:
        """The run's actions that its state allows now (the footer shows those); R
        still asks when it is not offered, and says why not."""
        return offered(self.progress) if self.progress is not None else frozenset()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in STATE_ACTIONS:
            return self.run is not None and action in self.offered()
        return True

    def action_why_not(self, action: str) -> None:
        """A key the footer does not offer now: the action itself says why not."""
        if action in STATE_ACTIONS:
            getattr(self, f"action_{action}")()

    def action_stop(self) -> None:
        if self.run is not None and not can_stop(self.run):
            self.notify(f"run {self.run_id} has ended ({self.run_state}); nothing to stop")
            return
        console, run_id = self.console, self.run_id

        def answered(yes: bool | None) -> None:
            if yes:
                console.perform(
                    lambda: request_stop(console.database, run_id, console.clock),
                    lambda _: self.notify(f"stop of run {run_id} recorded"),
                    failure=f"Could not stop run {run_id}",
                )

        self.app.push_screen(
            Confirm(
                f"Stop run {self.run_id}?",
                "Messages in flight finish; the rest stays pending and is sent by a "
                "restart. Sent messages are not recalled.",
            ),
            answered,
        )

    def action_restart(self) -> None:
        check = restart_check(self.run_id, self.run_state)
        if not check.allowed:
            self.notify(check.why)
            return
        confirm_restart(self, self.run_id)

    def action_resend_unknown(self) -> None:
        unknown = unknown_to_resend(self.run) if self.run is not None else 0
        if not unknown:
            self.notify("no recipient of this run is unknown")
            return
        self.app.push_screen(
            Confirm(
                f"Re-send the {plural(unknown, 'unknown recipient')} of run {self.run_id}?",
                "Their delivering process stopped while sending: they may already have "
                "the message. Each keeps its Message-ID, so a receiving system can spot "
                "a duplicate.",
            ),
            lambda yes: launch_restart(self, self.run_id, resend_unknown=True) if yes else None,
        )

    def action_export(self) -> None:
        """The recipients the filter shows, to a CSV file (a dialog asks where)."""

        def written(result: tuple[Path, int] | None) -> None:
            if result is not None:
                target, n = result
                self.notify(f"run {self.run_id}: {plural(n, 'recipient')} exported to {target}")

        self.app.push_screen(
            ExportDialog(self.console.database, self.run_id, self.selection, self.search_text),
            written,
        )

    def action_follow_up(self) -> None:
        """A new run for those this run did not reach (failed, bounced), once confirmed."""
        if self.run is not None and not can_follow_up(self.run):
            self.notify(f"run {self.run_id} is {self.run_state}: follow it up once it has ended")
            return
        console, run_id = self.console, self.run_id
        at = console.clock.now()
        console.perform(
            lambda: preview_follow_up(console.database, run_id, Selection(), at),
            lambda preview: self._confirm_follow_up(preview, at),
            failure=f"Could not plan a follow-up of run {run_id}",
        )

    def _confirm_follow_up(self, preview: Preview, at: datetime) -> None:
        run_id, console = self.run_id, self.console
        if not preview.chosen:
            self.notify(f"no recipient of run {run_id} failed or bounced: nothing to follow up")
            return
        decisions = preview.decisions
        excluded = preview.by_reason  # only the excluded have reasons
        detail = (
            f"{plural(preview.chosen, 'recipient')} did not get it (failed or bounced). "
            f"Planned again now: {decisions['included']} to send, "
            f"{decisions['deferred']} held for quiet hours, {decisions['excluded']} excluded"
            + (" — by reason:" if excluded else ".")
        )

        def start() -> int:
            new_id = start_follow_up(console.database, run_id, Selection(), at, console.clock)
            if get_run(console.database, new_id).state == RUNNING:
                console.launch(console.db_url, new_id)
            return new_id

        start_run_and_open(
            self,
            Confirm(
                f"Follow up run {run_id}: a new run for those it did not reach?",
                detail,
                counts=excluded,
            ),
            start,
            failure=f"Could not follow up run {run_id}",
            notice=lambda new_id: f"run {new_id} follows up run {run_id}",
        )

    def on_window_table_row_selected(self, event: WindowTable.RowSelected) -> None:
        """Enter on a row (the table takes the key itself)."""
        event.stop()
        self.action_customer()

    def _under_cursor(self) -> RecipientView | None:
        table = self.query_one("#recipients", WindowTable)
        if self.rows and table.display and table.cursor_row < len(self.rows):
            return self.rows[table.cursor_row]
        return None

    def action_message(self) -> None:
        view = self._under_cursor()
        if view is not None:
            self.console.visit(places.RecipientMessage(self.run_id, view.position, view.message_id))

    def action_customer(self) -> None:
        view = self._under_cursor()
        if self.run is not None and view is not None:
            self.console.visit(
                places.Customer(
                    view.customer_id,
                    definition=self.run.definition_id,
                    at=self.run.planned_at,
                    recipient=(self.run_id, view.position),
                )
            )
