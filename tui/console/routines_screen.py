"""Routines: each routine's schedule, next fire, last result and why it would not send now."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from core.clock import parse_instant
from core.delivery.starting import who
from core.triggers.routines import RoutineView, list_routines, run_now, set_enabled
from tui.console.confirm import Confirm
from tui.console.formatting import Column, add_columns, clip, styled
from tui.console.live import TableScreen, first_and_last
from tui.console.starting import start_run_and_open

OUTCOME_STYLE = {"started": "green", "late": "yellow", "blocked": "red", "failed": "red"}


def last_cell(view: RoutineView) -> str:
    if view.last is None:
        return "[dim]never fired[/]"
    outcome = view.last["outcome"]
    text = f"[{OUTCOME_STYLE.get(outcome, 'white')}]{outcome}[/]"
    if view.last["run"] is not None:
        text += f" run {view.last['run']}"
        if view.last["run_state"]:
            text += f" {styled(view.last['run_state'])}"
    return text


# At 80 columns the last fire and the schedule give way (the line under the table
# shows both for the highlighted routine).
COLUMNS: list[Column] = [
    ("Routine", 18, 18),
    ("Schedule", 10, 12),
    ("Next fire", 21, 22),
    ("Last fire", 16, 17),
    ("Result", 16, 26),
]


class RoutinesScreen(TableScreen[RoutineView, list[RoutineView]]):
    TABLE = "#routines"
    AUTO_FOCUS = "#routines"
    PURPOSE = (
        "Every routine: its schedule, the next time it fires (local), its last fire and "
        "run, and why it would not send now. Run one now, or disable or enable it."
    )
    BINDINGS = [
        Binding("escape", "back", "Back", id="routines.back"),
        Binding("r", "run_now", "Run now", id="routines.run"),
        Binding("d", "toggle_enabled", "Disable/enable", id="routines.toggle"),
        Binding("j", "cursor_down", "Down", show=False, id="routines.down"),
        Binding("k", "cursor_up", "Up", show=False, id="routines.up"),
        *first_and_last("routines"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("msgrun · routines", id="title-bar")
        table: DataTable[str] = DataTable(id="routines", cursor_type="row", zebra_stripes=True)
        self.widths = add_columns(
            table, COLUMNS, ["Last fire", "Schedule"], self.app.size.width, ["Result", "Routine"]
        )
        yield table
        yield Static("", id="routine-detail", classes="summary")
        yield Footer()

    def load(self) -> list[RoutineView]:
        return list_routines(self.console.database, self.console.clock.now())

    def show(self, data: list[RoutineView]) -> None:
        self.items = data
        table = self.query_one("#routines", DataTable)
        row = table.cursor_row
        table.clear()
        for view in self.items:
            zone = ZoneInfo(view.timezone)
            upcoming = (
                f"{view.next_fire.astimezone(zone):%a %d %b %H:%M %Z}"
                if view.next_fire is not None
                else "[yellow]disabled[/]"
            )
            last = (
                f"{parse_instant(view.last['scheduled_for']).astimezone(zone):%a %d %b %H:%M}"
                if view.last
                else "-"
            )
            cells = {
                "Routine": escape(clip(view.definition, self.widths["Routine"])),
                "Schedule": escape(view.cron),
                "Next fire": upcoming,
                "Last fire": last,
                "Result": last_cell(view),
            }
            table.add_row(*(cells[name] for name in self.widths), key=view.definition)
        if self.items:
            table.move_cursor(row=min(row, len(self.items) - 1))
        self._detail()

    def on_data_table_row_highlighted(self) -> None:
        self._detail()

    def _detail(self) -> None:
        view = self.selected()
        if view is None:
            text = "No routines: a definition becomes one with a routine trigger and a cron."
        else:
            lines = [f"[b]{escape(view.name)}[/b] · {escape(repr(view.cron))} in {view.timezone}"]
            times = []
            if view.next_fire is not None:
                times.append(f"next: {view.next_fire:%Y-%m-%d %H:%M} UTC")
            if view.last is not None:
                fired = parse_instant(view.last["scheduled_for"])
                times.append(f"last fire: {fired:%Y-%m-%d %H:%M} UTC")
            if times:
                lines.append(" · ".join(times))
            if view.last is not None:
                if view.last["detail"]:
                    lines.append(f"last: {escape(clip(view.last['detail'], 300))}")
                if view.last["skipped_fires"]:
                    lines.append(
                        f"{view.last['skipped_fires']} missed fire(s) skipped while no "
                        "worker was running"
                    )
            if view.blockers:
                for blocker in view.blockers:
                    lines.append(
                        f"[red]would not send: {blocker.code}[/]: {escape(blocker.detail)}"
                        f" → {escape(blocker.fix)}"
                    )
            else:
                lines.append("[green]would send now[/]")
            text = "\n".join(lines)
        self.query_one("#routine-detail", Static).update(text)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_run_now(self) -> None:
        view = self.selected()
        if view is None:
            return

        console, definition = self.console, view.definition

        def start() -> int:
            run_id = run_now(
                console.database,
                definition,
                console.clock,
                started_by=f"routine {definition} run now ({who()})",
            )
            console.launch(console.db_url, run_id)
            return run_id

        start_run_and_open(
            self,
            Confirm(
                f"Run routine {view.definition} now?",
                "Plans it for this moment and starts the run; its schedule is not changed.",
            ),
            start,
            failure=f"Could not run {definition}",
        )

    def action_toggle_enabled(self) -> None:
        view = self.selected()
        if view is None:
            return
        verb = "Disable" if view.enabled else "Enable"

        console, definition, enable = self.console, view.definition, not view.enabled

        def answered(yes: bool | None) -> None:
            if yes:
                console.perform(
                    lambda: set_enabled(console.database, definition, enable),
                    lambda _: self.notify(f"routine {definition} {verb.lower()}d"),
                    failure=f"Could not {verb.lower()} routine {definition}",
                )

        self.app.push_screen(
            Confirm(
                f"{verb} routine {view.definition}?",
                "A disabled routine never runs by itself; plans warn about it."
                if view.enabled
                else "It runs at its next fire time.",
            ),
            answered,
        )
