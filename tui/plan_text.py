"""Plans and customer drill-downs as plain text for a terminal or a pipe."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import IO, Any

from core.clock import format_instant
from core.planner.explain import CustomerReport
from core.planner.plan import DECISIONS, Candidate, Plan
from core.planner.reasons import CODES, fix_for
from core.planner.report import spool_plan
from core.storage import Database
from tui.delivery_text import deliveries_section

INDENT = "  "


def _trigger(plan: Plan) -> str:
    d = plan.definition
    if d.trigger_type == "routine":
        return f"routine {d.trigger_cron} ({'enabled' if d.trigger_enabled else 'disabled'})"
    if d.trigger_type == "event":
        return f"event {d.trigger_event}"
    return "manual"


def definition_line(plan: Plan) -> str:
    d = plan.definition
    parts = [
        f"kind {d.kind}",
        f"address key {d.address_key!r}",
        f"trigger {_trigger(plan)}",
        f"dedup {d.dedup}",
    ]
    if d.use_billing_rules:
        parts.append("billing rules")
    if d.quiet_hours is not None:
        parts.append(f"quiet hours {d.quiet_hours.start:%H:%M}-{d.quiet_hours.end:%H:%M}")
    return " · ".join(parts)


def summary_lines(plan: Plan) -> Iterator[str]:
    s = plan.summary
    counts = ", ".join(f"{s.decisions[d]} {d}" for d in DECISIONS)
    yield f"{s.candidates} candidates: {counts}"
    if s.by_reason:
        yield ""
        yield "Excluded, by reason (a candidate may have several):"
        width = max(len(code) for code in s.by_reason)
        for code in CODES:
            if s.by_reason[code]:
                yield f"{INDENT}{code:<{width}}  {s.by_reason[code]:>6}  fix: {fix_for(code)}"
    if plan.warnings:
        yield ""
        yield "Warnings:"
        for warning in plan.warnings:
            yield f"{INDENT}! {warning}"


HEADER = ("CUSTOMER", "ADDRESS", "DOCUMENT", "LABEL", "DECISION")
WIDEST = 40  # a column is no wider; a longer cell pushes the rest of its line along


def candidate_cells(candidate: Candidate) -> tuple[str, ...]:
    """A candidate's row: its cells under ``HEADER``."""
    c = candidate
    return (
        c.customer,
        c.address if c.address is not None else "(no address)",
        c.document or "-",
        c.label or "-",
        c.decision + (f" until {format_instant(c.send_after)}" if c.send_after is not None else ""),
    )


def reason_lines(candidate: Candidate, *, with_fix: bool = False) -> list[str]:
    """The lines under a candidate's row: each reason, and its fix when asked."""
    lines = []
    for reason in candidate.reasons:
        lines.append(f"{INDENT * 3}- {reason.code}: {reason.detail}")
        if with_fix:
            lines.append(f"{INDENT * 4}fix: {fix_for(reason.code)}")
    return lines


class Columns:
    """The columns' widths: each its widest cell's (or its header's), at most ``WIDEST``."""

    def __init__(self) -> None:
        self.widths = [len(title) for title in HEADER]

    def fit(self, cells: tuple[str, ...]) -> None:
        widths = self.widths
        for i, cell in enumerate(cells):
            if len(cell) > widths[i]:
                widths[i] = min(len(cell), WIDEST)

    def line(self, cells: Sequence[str]) -> str:
        widths = self.widths
        return INDENT + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()


def candidate_lines(candidates: list[Candidate], *, with_fix: bool = False) -> Iterator[str]:
    if not candidates:
        yield f"{INDENT}(no candidates)"
        return
    rows = [candidate_cells(c) for c in candidates]
    columns = Columns()
    for row in rows:
        columns.fit(row)
    yield columns.line(HEADER)
    for candidate, row in zip(candidates, rows, strict=True):
        yield columns.line(row)
        yield from reason_lines(candidate, with_fix=with_fix)


def plan_text(plan: Plan) -> str:
    lines = [
        *head_lines(plan),
        *candidate_lines(plan.candidates),
    ]
    return "\n".join(lines)


def head_lines(plan: Plan) -> list[str]:
    """What comes before the candidates: the definition, the summary, the warnings."""
    return [
        f"Plan of {plan.definition.id} ({plan.definition.name}) at {format_instant(plan.at)}",
        definition_line(plan),
        "",
        *summary_lines(plan),
        "",
        "Candidates:",
    ]


def stream_plan_text(
    database: Database,
    definition_id: str,
    at: datetime,
    environ: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """``msgrun plan``: ``plan_text(make_plan(...))``, the same text, without the plan in
    memory. The summary and the columns' widths are known once every candidate is: each
    candidate's cells and reason lines go to a temporary file as they are decided (a JSON
    array a line: customer data stays data), then the head and the rows are written from
    it. Planning is done when this returns (a ``PlanningError`` is raised here)."""
    columns = Columns()

    def spooled(candidates: Iterator[Candidate]) -> Iterator[str]:
        for candidate in candidates:
            cells = candidate_cells(candidate)
            columns.fit(cells)
            yield json.dumps([*cells, *reason_lines(candidate)], ensure_ascii=False) + "\n"

    spool = spool_plan(database, definition_id, at, spooled, environ)
    return _rows(spool.spool, head_lines(spool.plan), columns, spool.plan.summary.candidates)


def _rows(spool: IO[str], head: list[str], columns: Columns, count: int) -> Iterator[str]:
    """The text: the head, then each line after a newline (``"\\n".join`` of them all,
    given out a thousand lines at a time)."""
    with spool:
        yield "\n".join(head)
        if not count:
            yield f"\n{INDENT}(no candidates)"
            return
        lines = ["", columns.line(HEADER)]  # joined: a newline before each line
        for row in spool:
            cells = json.loads(row)
            lines.append(columns.line(cells[:5]))
            lines += cells[5:]
            if len(lines) >= 1000:
                yield "\n".join(lines)
                lines = [""]
        if len(lines) > 1:
            yield "\n".join(lines)


def _preferences(preferences: dict[str, Any]) -> str:
    if not preferences:
        return ""
    return " · " + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in preferences.items())


def why_text(report: CustomerReport) -> str:
    c = report.customer
    facts = [f"cluster {c['cluster']}" if c["cluster"] else "no cluster"]
    facts.append(f"timezone {c['timezone']}" if c["timezone"] else "organisation's timezone")
    if c["attributes"]:
        facts.append(
            "attributes " + ", ".join(f"{k}={v!r}" for k, v in sorted(c["attributes"].items()))
        )
    lines = [f"Customer {c['id']} {c['name']}", " · ".join(facts), "", "Contacts:"]
    if not c["contacts"]:
        lines.append(f"{INDENT}(none)")
    for contact in c["contacts"]:
        allowed = "email allowed" if contact["allow_email"] else "EMAIL NOT ALLOWED"
        lines.append(
            f"{INDENT}{contact['id']} {contact['name']} · {allowed}"
            + _preferences(contact["preferences"])
        )
        if not contact["addresses"]:
            lines.append(f"{INDENT * 2}(no addresses)")
        for a in contact["addresses"]:
            notes = []
            if not a["valid"]:
                notes.append(f"INVALID: {a['problem']}")
            if a["suppression"]:
                s = a["suppression"]
                notes.append(f"SUPPRESSED: {s['reason']} since {s['since']}")
            for u in a.get("unsubscribes", []):
                notes.append(
                    f"UNSUBSCRIBED: {u['preference']} ({u['kind']}, "
                    f"{u['how'].replace('_', '-')} {u['at'][:10]}, run {u['run']})"
                )
            note = f" · {' · '.join(notes)}" if notes else ""
            lines.append(
                f"{INDENT * 2}{a['key']:<10} {a['address']}{_preferences(a['preferences'])}{note}"
            )
    lines += ["", "Services:"]
    lines += [
        f"{INDENT}{s['id']} {s['status']} · billing email "
        + ("allowed" if s["allow_billing_email"] else "NOT ALLOWED")
        for s in c["services"]
    ] or [f"{INDENT}(none)"]
    lines += ["", "Documents:"]
    for d in c["documents"]:
        bits = [d["kind"], d["label"], d["status"]]
        if d["due_date"]:
            bits.append(f"due {d['due_date']}")
        if d["amount"]:
            bits.append(f"{d['currency'] or ''} {d['amount']}".strip())
        if d["service"]:
            bits.append(f"service {d['service']}")
        if d["billing_method"]:
            bits.append(f"billing {d['billing_method_name']}")
        lines.append(f"{INDENT}{d['id']}: " + " · ".join(bits))
    if not c["documents"]:
        lines.append(f"{INDENT}(none)")
    lines += ["", "History:"]
    for h in c["history"]:
        bits = [f"{h['at']} {h['definition']}"]
        if h["document"]:
            bits.append(f"document {h['document']}")
        if h["address"]:
            bits.append(f"to {h['address']}")
        if h["offset_days"] is not None:
            bits.append(f"offset {h['offset_days']:+d}")
        if h["run"] is not None:
            bits.append(f"run {h['run']}")
        lines.append(INDENT + " · ".join(bits))
    if not c["history"]:
        lines.append(f"{INDENT}(none)")
    lines += ["", *deliveries_section(report.deliveries)]
    lines += ["", f"Decisions at {format_instant(report.at)}:"]
    for plan in report.plans:
        lines += [
            "",
            f"{plan.definition.id} ({plan.definition.name})",
            INDENT + definition_line(plan),
        ]
        if not plan.candidates:
            kind = plan.definition.document_kind
            lines.append(f"{INDENT}(no candidates: the customer has no {kind} documents)")
            continue
        lines += list(candidate_lines(plan.candidates, with_fix=True))
        lines += [f"{INDENT}! {warning}" for warning in plan.warnings]
    return "\n".join(lines)
