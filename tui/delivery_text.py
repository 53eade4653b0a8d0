"""A recipient's delivery in words (``why``'s Deliveries, ``run show``, the console).

Plain text lines; the console escapes them. What they say comes from the one
read model, ``core.views.deliveries.Delivery``.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.attachments.evidence import sent_lines
from core.clock import format_instant
from core.states import EXCLUDED, FAILED, SENDING, SENT, UNKNOWN
from core.views.deliveries import Delivery, outcome_words

INDENT = "  "


def when(moment: object) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment is not None else "-"


def heading(d: Delivery) -> str:
    """``run 9 · spring-news · ana@example.org · D-1 2026-0042``."""
    document = f" · {d.document_id} {d.label or ''}".rstrip() if d.document_id else ""
    return f"run {d.run_id} · {d.definition_id} · {d.address or '(no address)'}{document}"


def state_line(d: Delivery) -> str:
    """The state and what decided it, with more than ``summary`` where there is more."""
    if d.state == SENT:
        at = f" at {when(d.sent_at)}" if d.sent_at is not None else ""
        return f"sent{at}: {d.last_words}".rstrip(": ")
    if d.state == UNKNOWN:
        since = format_instant(d.updated_at) if d.updated_at else "?"
        return (
            f"unknown since {since}: it may have been delivered (the process sending it "
            f"stopped while it was being sent) — `run restart {d.run_id} --resend-unknown` "
            "sends it again"
        )
    return d.state_words()


def attempt_lines(d: Delivery, indent: str) -> list[str]:
    """Every attempt in order: its instant (UTC), the reply, and the one that settled it."""
    lines = []
    for number, attempt in enumerate(d.attempt_log, start=1):
        mark = " (settled it)" if attempt.settled else ""
        lines.append(f"{indent}{number}. {when(attempt.at)}  {attempt.words}{mark}")
    # A recipient being sent counts the attempt under way, which is kept once it ends.
    under_way = 1 if d.state == SENDING else 0
    if under_way:
        lines.append(f"{indent}{len(d.attempt_log) + 1}. under way")
    earlier = d.attempts - under_way - len(d.attempt_log)
    if earlier > 0 and d.attempt_log:
        lines.append(
            f"{indent}({earlier} earlier attempt(s) made before msgrun kept every attempt)"
        )
    return lines


def outcome_lines(d: Delivery, indent: str) -> list[str]:
    """Every report about it: what it says, when, which report, and the server's words."""
    lines = []
    for o in d.outcomes:
        detail = f": {o.detail}" if o.detail else ""
        lines.append(f"{indent}{outcome_words(o)} · report {o.report_id}{detail}")
    return lines


def delivery_lines(d: Delivery, indent: str = INDENT) -> list[str]:
    """A delivery in full: heading, state, reasons, attempts, reports, hand-on."""
    inner = indent + INDENT
    lines = [indent + heading(d), inner + state_line(d)]
    if d.state == EXCLUDED:
        lines += [f"{inner}- {r.get('code', '?')}: {r.get('detail', '')}" for r in d.reasons]
    if d.attempt_log:
        lines.append(f"{inner}attempts (UTC):")
        lines += attempt_lines(d, inner + INDENT)
    # What its message carried (attachments.md), as the console's drill-down says it.
    carried = sent_lines(d.attachments, d.state, d.sent_at, with_sha256=False)
    lines += [inner + line for line in carried]
    if d.outcomes:
        lines.append(f"{inner}reports:")
        lines += outcome_lines(d, inner + INDENT)
    if d.handed_on_to is not None:
        lines.append(f"{inner}→ handed on to run {d.handed_on_to}")
    return lines


def deliveries_section(deliveries: Sequence[Delivery]) -> list[str]:
    """``why``'s Deliveries: every recipient of the customer in every run, newest first."""
    lines = ["Deliveries (newest run first):"]
    if not deliveries:
        return [*lines, f"{INDENT}(none: no run has planned this customer)"]
    for d in deliveries:
        lines += delivery_lines(d)
    return lines


def recipient_line(d: Delivery) -> list[str]:
    """``run show``: one recipient, and under it what more is known (reasons, attempts)."""
    lines = [f"{INDENT}{d.customer_id}  {d.address or '-'}  {d.document_id or '-'}  {d.summary()}"]
    inner = INDENT * 3
    if d.state == EXCLUDED:
        lines += [f"{inner}- {r.get('code', '?')}: {r.get('detail', '')}" for r in d.reasons]
    if len(d.attempt_log) > 1 or (d.state == FAILED and d.attempt_log):
        lines += attempt_lines(d, inner)
    return lines
