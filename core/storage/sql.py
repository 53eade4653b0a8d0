"""Dialect helpers, each in one place: what SQLite and PostgreSQL spell differently."""

from __future__ import annotations

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
