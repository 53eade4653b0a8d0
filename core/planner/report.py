"""Plans as the JSON objects of interchange.md (``msgrun plan --json``)."""

from __future__ import annotations

import json
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
