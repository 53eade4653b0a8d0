"""Plans as the JSON objects of interchange.md (``msgrun plan --json``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from core.clock import format_instant
from core.planner.plan import Candidate, Plan
from core.planner.reasons import fix_for


def candidate_json(candidate: Candidate, *, with_fix: bool = False) -> dict[str, Any]:
    return {
        "customer": candidate.customer,
        "contact": candidate.contact,
        "address": candidate.address,
        "document": candidate.document,
        "label": candidate.label,
        "decision": candidate.decision,
        "reasons": [
            {"code": r.code, "detail": r.detail, "fix": fix_for(r.code)}
            if with_fix
            else {"code": r.code, "detail": r.detail}
            for r in candidate.reasons
        ],
        "send_after": (
            format_instant(candidate.send_after) if candidate.send_after is not None else None
        ),
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "definition": plan.definition.id,
        "at": format_instant(plan.at),
        "summary": plan.summary.as_json(),
        "candidates": [candidate_json(candidate) for candidate in plan.candidates],
        "warnings": list(plan.warnings),
    }


def dumps(value: Any) -> str:
    """The one JSON form of every output: stable, UTF-8, indented."""
    return json.dumps(value, ensure_ascii=False, indent=2)


def _nested(value: Any, depth: int) -> str:
    """``dumps(value)`` as it reads ``depth`` levels deep in an indented document."""
    return dumps(value).replace("\n", "\n" + "  " * depth)


def iter_plan_json(plan: Plan) -> Iterator[str]:
    """``dumps(plan_json(plan))`` in pieces, a candidate at a time.

    The same bytes, without holding a million dicts and one huge string.
    """
    yield "{\n"
    yield f'  "definition": {dumps(plan.definition.id)},\n'
    yield f'  "at": {dumps(format_instant(plan.at))},\n'
    yield f'  "summary": {_nested(plan.summary.as_json(), 1)},\n'
    if plan.candidates:
        yield '  "candidates": ['
        separator = "\n    "
        for candidate in plan.candidates:
            yield separator + _nested(candidate_json(candidate), 2)
            separator = ",\n    "
        yield "\n  ],\n"
    else:
        yield '  "candidates": [],\n'
    yield f'  "warnings": {_nested(list(plan.warnings), 1)}\n'
    yield "}"
