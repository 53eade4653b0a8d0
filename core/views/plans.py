"""The definitions, and a definition's plan preview, as the console shows them."""

from __future__ import annotations

from datetime import datetime

from core.planner.facts import DefinitionFacts
from core.planner.load import load_definitions
from core.planner.plan import Plan, make_plan
from core.storage.database import Database


def definitions(database: Database) -> list[DefinitionFacts]:
    with database.connect() as connection:
        return list(load_definitions(connection))


def plan_preview(
    database: Database, definition_id: str, at: datetime, keep: int | None = None
) -> Plan:
    """The plan a run of ``definition_id`` would snapshot at ``at`` (as ``msgrun plan``),
    every candidate counted and only the first ``keep`` held (None: all of them)."""
    return make_plan(database, definition_id, at, keep=keep)
