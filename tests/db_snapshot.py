"""Every row of every table, to prove what an operation did (or did not) write."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from core.storage import Database
from core.storage.models import Base


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    result: dict[str, list[tuple[Any, ...]]] = {}
    with database.connect() as connection:
        for table in Base.metadata.sorted_tables:
            rows = connection.execute(select(table)).all()
            result[table.name] = sorted(tuple(map(repr, row)) for row in rows)
    return result
