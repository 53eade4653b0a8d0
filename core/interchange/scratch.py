"""The import's scratch tables: temporary tables of its own transaction, so that what
it must remember about the file so far (ids, forward references, rows waiting for
their targets) stays on disk, not in memory, however large the file.

- ``import_seen``: each id the file gave (by kind), where it was first, and for
  contacts and services the customer that lists them;
- ``import_reference``: references not found when their record was read, checked
  again at the end (a document may come before its customer);
- ``import_later``: rows that could not be written yet because a row they point
  to comes later in the file (pickled: they never leave this transaction).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)

metadata = MetaData()

seen = Table(
    "import_seen",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("id", String(400), primary_key=True),
    Column("path", Text, nullable=False),
    Column("owner", String(400)),
    prefixes=["TEMPORARY"],
)

reference = Table(
    "import_reference",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("grp", String(32), nullable=False),
    Column("position", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("target", String(400), nullable=False),
    Column("customer", String(400)),
    prefixes=["TEMPORARY"],
)

later = Table(
    "import_later",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("section", String(32), nullable=False),
    Column("row", LargeBinary, nullable=False),
    prefixes=["TEMPORARY"],
)

TABLES = (seen, reference, later)
READ_CHUNK = 2000


def create(connection: Connection) -> None:
    """Fresh scratch tables for this connection (a pooled one may hold old ones)."""
    schema = "pg_temp" if connection.dialect.name == "postgresql" else "temp"
    for table in TABLES:
        connection.execute(text(f"DROP TABLE IF EXISTS {schema}.{table.name}"))
    metadata.create_all(connection, checkfirst=False)


def analyse(connection: Connection) -> None:
    """Statistics for PostgreSQL's planner (autovacuum never sees temporary tables):
    without them, the end's checks join a hundred thousand ids by nested loops."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("ANALYZE import_seen, import_reference"))


def drop(connection: Connection) -> None:
    for table in TABLES:
        table.drop(connection)


def keep_for_later(connection: Connection, section: str, rows: Iterable[dict[str, Any]]) -> None:
    payload = [{"section": section, "row": pickle.dumps(row)} for row in rows]
    if payload:
        connection.execute(later.insert(), payload)


def rows_for_later(connection: Connection, section: str) -> Iterator[list[dict[str, Any]]]:
    """The rows kept for later of ``section``, in file order, a chunk at a time."""
    after = 0
    while True:
        chunk = connection.execute(
            select(later.c.seq, later.c.row)
            .where(later.c.section == section, later.c.seq > after)
            .order_by(later.c.seq)
            .limit(READ_CHUNK)
        ).all()
        if not chunk:
            return
        after = chunk[-1].seq
        yield [pickle.loads(row.row) for row in chunk]


__all__ = [
    "analyse",
    "create",
    "drop",
    "keep_for_later",
    "later",
    "reference",
    "rows_for_later",
    "seen",
]
