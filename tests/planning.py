"""Helpers for planner tests: import a file, plan it, look at the codes."""

from __future__ import annotations

from typing import Any

from core.clock import parse_instant
from core.planner.plan import Candidate, Plan, make_plan
from core.storage import Database
from tests.conftest import load_ok

DEFAULT_AT = "2026-11-23T10:00:00+00:00"


def plan_of(
    db: Database,
    document: dict[str, Any],
    definition: str = "inv",
    at: str = DEFAULT_AT,
    environ: dict[str, str] | None = None,
) -> Plan:
    load_ok(db, document)
    return make_plan(db, definition, parse_instant(at), environ=environ or {})


def only(plan: Plan) -> Candidate:
    assert len(plan.candidates) == 1, plan.candidates
    return plan.candidates[0]


def codes(candidate: Candidate) -> list[str]:
    return [reason.code for reason in candidate.reasons]


def details(candidate: Candidate) -> dict[str, str]:
    return {reason.code: reason.detail for reason in candidate.reasons}
