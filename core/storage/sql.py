"""Dialect helpers, each in one place: what SQLite and PostgreSQL spell differently."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, text
from sqlalchemy.dialects import postgresql, sqlite


def dialect_insert(connection: Connection, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both databases)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def insert_ignoring(connection: Connection, table: Table, keys: str | list[str]) -> Any:
    """INSERT that skips rows whose ``keys`` already exist (ON CONFLICT DO NOTHING)."""
    elements = [keys] if isinstance(keys, str) else keys
    return dialect_insert(connection, table).on_conflict_do_nothing(index_elements=elements)


def database_now(connection: Connection) -> datetime:
    """The database server's clock (PostgreSQL), or this machine's (SQLite: one machine).

    Leases of processes on several machines are measured on it, so that
    machines whose clocks differ still agree on who is alive.
    """
    if connection.dialect.name == "postgresql":
        value = connection.execute(text("SELECT now()")).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


# -- statements written for the driver ---------------------------------------------------
# The hot statements of delivery (recording results, writing the ledger) run for
# hundreds of rows at a time; SQLAlchemy's per-row parameter processing costs more
# than the database's work there. These helpers run such a statement, written in
# plain SQL that both databases take, straight through the driver.


def placeholder(connection: Connection) -> str:
    """The driver's positional placeholder: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    return "%s" if connection.dialect.name == "postgresql" else "?"


def driver_instant(connection: Connection, value: datetime | None) -> Any:
    """An instant as the driver takes it for a ``UTCDateTime`` column: naive UTC, as
    text on SQLite in the form SQLAlchemy stores (``2026-11-23 10:00:00.000000``)."""
    if value is None:
        return None
    naive = value.astimezone(UTC).replace(tzinfo=None)
    if connection.dialect.name == "postgresql":
        return naive
    return naive.isoformat(" ", "microseconds")


def run_many(connection: Connection, statement: str, rows: list[tuple[Any, ...]]) -> int:
    """``statement`` (placeholders from ``placeholder``) for every row, through the
    driver at once; the number of rows it changed."""
    if not rows:
        return 0
    return int(connection.exec_driver_sql(statement, rows).rowcount)


def rows_by_ids(connection: Connection, query: str, ids: Iterable[str]) -> list[Sequence[Any]]:
    """``query`` (a SELECT whose first column is ``id``) for the rows with these ids,
    through the driver: values come as the driver gives them (see ``json_value``,
    ``date_text``)."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    mark = placeholder(connection)
    found: list[Sequence[Any]] = []
    for start in range(0, len(wanted), 5000):  # within every driver's parameter limit
        chunk = wanted[start : start + 5000]
        found.extend(
            connection.exec_driver_sql(
                f"{query} WHERE id IN ({', '.join(mark for _ in chunk)})", tuple(chunk)
            ).all()
        )
    return found


def json_value(value: Any) -> Any:
    """A JSON column as read through the driver: text on SQLite, decoded on PostgreSQL."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def date_text(value: Any) -> str | None:
    """A date column as read through the driver, as ``YYYY-MM-DD``."""
    if value is None:
        return None
    return value if isinstance(value, str) else str(value.isoformat())
