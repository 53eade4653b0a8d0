"""Looking up stored ids a batch at a time (the import's references and replacements).

What is "in the file or already stored" is decided in ``load.py``, inside the
import's transaction, so that a file with a dangling reference is rejected whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Column, Connection, Table, select

CHUNK = 500


def chunks(values: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def stored_ids(connection: Connection, table: Table, wanted: Iterable[str]) -> set[str]:
    """Which of ``wanted`` ids exist in ``table``."""
    id_column: Column[str] = table.c.id
    found: set[str] = set()
    for batch in chunks(sorted(set(wanted))):
        found.update(connection.execute(select(id_column).where(id_column.in_(batch))).scalars())
    return found


def stored_children(connection: Connection, table: Table, parents: Iterable[str]) -> dict[str, str]:
    """id → customer_id of the rows of ``table`` that belong to ``parents``."""
    owner: dict[str, str] = {}
    for batch in chunks(sorted(set(parents))):
        rows = connection.execute(
            select(table.c.id, table.c.customer_id).where(table.c.customer_id.in_(batch))
        )
        owner.update({row.id: row.customer_id for row in rows})
    return owner


__all__ = ["chunks", "stored_children", "stored_ids"]
