"""Plan preview: a definition's plan at an instant, before any run; start one from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from core.clock import format_instant
from core.delivery.starting import create_run
from core.planner.facts import DefinitionFacts
from core.planner.load import PlanningError
from core.planner.plan import Candidate, Plan
from core.planner.reasons import CODES, fix_for
from core.views.plans import definitions, plan_preview
from tui.console import places
from tui.console.charts import CountBars
from tui.console.confirm import Confirm
from tui.console.formatting import Column, add_columns, clip, clip_id, plural, styled
from tui.console.live import LiveScreen
from tui.console.starting import start_run_and_open
from tui.plan_text import definition_line

DEFINITION_COLUMNS: list[Column] = [
    ("Definition", 18, 18),
    ("Name", 12, 30),
    ("Kind", 8, 17),
    ("Key", 8, 10),
    ("Trigger", 10, 26),
]
# In the plan preview the whole decision word stays ("deferred until 09:00"); the
# document gives way first at 80 columns (enter shows a candidate in full).
CANDIDATE_COLUMNS: list[Column] = [
    ("Customer", 8, 10),
    ("Address", 20, 32),
    ("Document", 10, 22),
    ("Decision", 20, 20),
    ("Reasons", 12, 40),
]
CANDIDATE_GROW = ["Address", "Document", "Customer", "Reasons"]


@dataclass(frozen=True)
class NotPlanned:
    """The definition could not be planned: why, in words."""

    why: str


class DefinitionsScreen(LiveScreen[list[DefinitionFacts]]):
    AUTO_FOCUS = "#definitions"
    PURPOSE = "Every message definition: pick one to see its plan."
    BINDINGS = [
        Binding("escape", "back", "Back", id="definitions.back"),
        Binding("enter", "plan", "Plan", id="definitions.plan"),
        Binding("j", "cursor_down", "Down", show=False, id="definitions.down"),
        Binding("k", "cursor_up", "Up", show=False, id="definitions.up"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.widths: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Static("msgrun · definitions", id="title-bar")
        table: DataTable[str] = DataTable(id="definitions", cursor_type="row")
        self.widths = add_columns(
            table, DEFINITION_COLUMNS, ["Key", "Kind"], self.app.size.width, ["Trigger", "Kind"]
        )
        yield table
        yield Footer()

    def load(self) -> list[DefinitionFacts]:
        return definitions(self.console.database)

    def show(self, data: list[DefinitionFacts]) -> None:
        table = self.query_one("#definitions", DataTable)
        if self.ids == [d.id for d in data]:
            return
        self.ids = [d.id for d in data]
        table.clear()
        for d in data:
            trigger = (
                d.trigger_type
                + (f" {d.trigger_cron}" if d.trigger_cron else "")
                + (f" {d.trigger_event}" if d.trigger_event else "")
            )
            cells = {
                "Definition": d.id,
                "Name": d.name,
                "Kind": d.kind,
                "Key": d.address_key,
                "Trigger": trigger,
            }
            table.add_row(
                *(
                    escape(clip(cells[name], self.widths[name]))
                    for name, _, _ in DEFINITION_COLUMNS
                    if name in self.widths
                ),
                key=d.id,
            )

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table takes the key itself)."""
        event.stop()
        self.action_plan()

    def action_plan(self) -> None:
        table = self.query_one("#definitions", DataTable)
        if self.ids:
            self.console.visit(places.Plan(self.ids[table.cursor_row]))

    def action_cursor_down(self) -> None:
        self.query_one("#definitions", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#definitions", DataTable).action_cursor_up()


class PlanScreen(LiveScreen[Plan | NotPlanned | None]):
    AUTO_FOCUS = "#candidates"
    PURPOSE = (
        "A definition's plan at an instant: counts by decision and by reason, every "
        "candidate; enter shows a candidate's reasons and fixes; s starts a run."
    )
    BINDINGS = [
        Binding("escape", "back", "Back", id="plan.back"),
        Binding("enter", "candidate", "Reasons", id="plan.candidate"),
        Binding("s", "start", "Start run", id="plan.start"),
        Binding("j", "cursor_down", "Down", show=False, id="plan.down"),
        Binding("k", "cursor_up", "Up", show=False, id="plan.up"),
    ]
    LIMIT = 2000  # candidates held and listed; the summary counts them all

    def __init__(self, definition_id: str, at: datetime | None = None) -> None:
        super().__init__()
        self.definition_id = definition_id
        self.at = at
        self.plan: Plan | None = None
        self.widths: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Static(f"msgrun · plan of {self.definition_id}", id="title-bar")
        yield Static("planning…", id="plan-summary", classes="summary")
        yield CountBars(id="plan-reasons", classes="chart")
        yield Static("", id="plan-notes", classes="summary")
        table: DataTable[str] = DataTable(id="candidates", cursor_type="row", zebra_stripes=True)
        self.widths = add_columns(
            table, CANDIDATE_COLUMNS, ["Document"], self.app.size.width, CANDIDATE_GROW
        )
        yield table
        yield Footer()

    def load(self) -> Plan | NotPlanned | None:
        if self.plan is not None:
            return None  # a plan is a snapshot: planned once per visit
        at = self.at or self.console.clock.now()
        try:
            return plan_preview(self.console.database, self.definition_id, at, self.LIMIT)
        except PlanningError as error:
            return NotPlanned(str(error))

    def show(self, data: Plan | NotPlanned | None) -> None:
        if data is None:
            return
        if isinstance(data, NotPlanned):
            self.query_one("#plan-summary", Static).update(f"[red]{escape(data.why)}[/]")
            return
        plan = data
        self.plan = plan
        s = plan.summary
        lines = [
            f"{plan.definition.name} at {format_instant(plan.at)}",
            definition_line(plan),
            f"{plural(s.candidates, 'candidate')}: {styled('included')} {s.decisions['included']}  "
            f"{styled('deferred')} {s.decisions['deferred']}  "
            f"{styled('excluded')} {s.decisions['excluded']}",
        ]
        reasons = {code: s.by_reason[code] for code in CODES if s.by_reason[code]}
        shown: list[tuple[str, int]] = []
        notes: list[str] = []
        if reasons:  # the candidates by reason, as horizontal bars
            # As many bars as leave the table room; the rest named on one line.
            room = max(3, (self.app.size.height - 12) // 2)
            ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
            shown, rest = ranked[:room], ranked[room:]
            if len(rest) == 1:
                shown, rest = ranked, []
            lines.append("by reason:")
            if rest:
                more = " · ".join(f"{code} {n}" for code, n in rest)
                notes.append(escape(clip(f"and {len(rest)} more: {more}", self.app.size.width - 2)))
        # A warning may name a hundred customers: two lines of it, the rest in `msgrun plan`.
        room = 2 * (self.app.size.width - 4)
        notes += [f"[yellow]! {escape(clip(w, room))}[/]" for w in plan.warnings]
        self.query_one("#plan-summary", Static).update("\n".join(lines))
        self.query_one("#plan-reasons", CountBars).show_counts(dict(shown))
        notes_box = self.query_one("#plan-notes", Static)
        notes_box.update("\n".join(notes))
        notes_box.display = bool(notes)
        table = self.query_one("#candidates", DataTable)
        table.clear()
        for c in plan.candidates[: self.LIMIT]:
            decision = styled(c.decision) + (
                f" until {c.send_after:%H:%M}" if c.send_after is not None else ""
            )
            cells = {
                "Customer": escape(clip_id(c.customer, self.widths["Customer"])),
                "Address": escape(clip(c.address or "(no address)", self.widths["Address"])),
                "Document": escape(
                    clip(f"{c.document or '-'} {c.label or ''}", self.widths.get("Document", 0))
                ),
                "Decision": decision,
                "Reasons": escape(clip(", ".join(c.codes()), self.widths["Reasons"])),
            }
            table.add_row(*(cells[name] for name, _, _ in CANDIDATE_COLUMNS if name in self.widths))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cursor_down(self) -> None:
        self.query_one("#candidates", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#candidates", DataTable).action_cursor_up()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row (the table takes the key itself)."""
        event.stop()
        self.action_candidate()

    def action_candidate(self) -> None:
        table = self.query_one("#candidates", DataTable)
        if self.plan is not None and self.plan.candidates:
            self.app.push_screen(CandidateScreen(self.plan.candidates[table.cursor_row]))

    def action_start(self) -> None:
        if self.plan is None:
            return
        plan = self.plan
        s = plan.summary

        console = self.console

        def start() -> int:
            run_id = create_run(console.database, plan.definition.id, plan.at, console.clock)
            console.launch(console.db_url, run_id)
            return run_id

        # The run's screen takes the plan's place: back from it is the definitions.
        start_run_and_open(
            self,
            Confirm(
                f"Start a run of {plan.definition.id}?",
                f"{s.decisions['included']} to send now, {s.decisions['deferred']} held "
                f"for quiet hours, {s.decisions['excluded']} excluded.",
            ),
            start,
            failure=f"Could not start {plan.definition.id}",
            replace=True,
        )


class CandidateScreen(ModalScreen[None]):
    """One candidate: its decision, every reason with its detail and its fix."""

    BINDINGS = [Binding("escape,enter", "close", "Close", id="candidate.close")]

    def __init__(self, candidate: Candidate) -> None:
        super().__init__()
        self.candidate = candidate

    def compose(self) -> ComposeResult:
        c = self.candidate
        lines = [
            f"[b]{escape(c.customer)}[/b] · {escape(c.address or '(no address)')} · "
            f"{escape(c.document or '')} {escape(c.label or '')}",
            f"decision: {styled(c.decision)}"
            + (f" until {format_instant(c.send_after)}" if c.send_after else ""),
            "",
        ]
        for reason in c.reasons:
            lines += [
                f"[b]{reason.code}[/b]: {escape(reason.detail)}",
                f"  fix: {fix_for(reason.code)}",
                "",
            ]
        if not c.reasons:
            lines.append(
                "No rule fails: it is sent" + (" when quiet hours end." if c.send_after else ".")
            )
        with VerticalScroll(id="confirm"):
            yield Static("\n".join(lines))
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
