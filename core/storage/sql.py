"""Dialect helpers, each in one place: what SQLite and PostgreSQL spell differently."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, text
from sqlalchemy.dialects import postgresql, sqlite

from core.storage.types import UTCDateTime

T = TypeVar("T")


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


def driver_instants(connection: Connection) -> Callable[[datetime | None], Any]:
    """An instant as this connection's driver takes it for a ``UTCDateTime`` column:
    naive UTC (``UTCDateTime``'s own conversion), as text on SQLite in the form
    SQLAlchemy stores (``2026-11-23 10:00:00.000000``). One function: batches make
    several a row."""
    if connection.dialect.name == "postgresql":
        return _naive_utc
    return _sqlite_instant


def remembered(convert: Callable[[datetime | None], Any]) -> Callable[[datetime | None], Any]:
    """``convert``, made once per distinct instant (a result's instant is its sent
    time, its first attempt and its ledger entry's time)."""
    made: dict[datetime | None, Any] = {None: None}

    def instant(value: datetime | None) -> Any:
        try:
            return made[value]
        except KeyError:
            made[value] = text = convert(value)
            return text

    return instant


_UTC_INSTANT = UTCDateTime()


def _naive_utc(value: datetime | None) -> datetime | None:
    return _UTC_INSTANT.process_bind_param(value, None)  # type: ignore[arg-type]


def _sqlite_instant(value: datetime | None) -> str | None:
    naive = _naive_utc(value)
    return None if naive is None else naive.isoformat(" ", "microseconds")


def run_many(connection: Connection, statement: str, rows: list[tuple[Any, ...]]) -> int:
    """``statement`` (placeholders from ``placeholder``) for every row, through the
    driver at once; the number of rows it changed."""
    if not rows:
        return 0
    return int(connection.exec_driver_sql(statement, rows).rowcount)


# On SQLite a batch goes in statements of many rows each: an executemany binds and
# steps every row from Python, giving the GIL away and taking it back around each
# step (behind a delivering process's busy event loop); one statement per chunk
# does that once. (psycopg sends an executemany as one pipeline: PostgreSQL keeps it.)
ROWS_PER_STATEMENT = 1024  # 1024 x 10 columns: within SQLite's 32,766 parameters


def _chunks(rows: list[tuple[Any, ...]]) -> Iterable[list[tuple[Any, ...]]]:
    """``rows`` in chunks of a power of two, the largest first: a statement of each size
    is parsed once and then found in the driver's statement cache (a batch's odd
    remainder, a new statement every time, cost as much to parse as to run)."""
    start = 0
    while start < len(rows):
        size = min(ROWS_PER_STATEMENT, 1 << ((len(rows) - start).bit_length() - 1))
        yield rows[start : start + size]
        start += size


def _values(width: int, count: int) -> str:
    row = f"({', '.join('?' for _ in range(width))})"
    return ", ".join(row for _ in range(count))


def update_rows(
    connection: Connection,
    table: str,
    assignments: Sequence[tuple[str, str]],
    key: str,
    rows: list[tuple[Any, ...]],
    *,
    condition: str = "",
) -> int:
    """UPDATE ``table`` row by row: each row of ``rows`` holds one value per
    assignment, then the ``key`` column's value. An assignment is a column and an
    expression in which ``{}`` stands for the row's value (``"COALESCE(sent_at, {})"``;
    one without takes no value: ``"NULL"``);
    ``condition`` (plain SQL on the table's columns) guards every row. Returns how
    many rows changed."""
    if not rows:
        return 0
    guard = f" AND {condition}" if condition else ""
    if connection.dialect.name == "postgresql":
        mark = placeholder(connection)
        sets = ", ".join(f"{column} = {value.format(mark)}" for column, value in assignments)
        return run_many(connection, f"UPDATE {table} SET {sets} WHERE {key} = {mark}{guard}", rows)
    parts, width = [], 1
    for column, value in assignments:
        if "{}" in value:
            value, width = value.format(f"v.column{width}"), width + 1
        parts.append(f"{column} = {value}")
    sets, changed = ", ".join(parts), 0
    for chunk in _chunks(rows):
        statement = (
            f"UPDATE {table} SET {sets} FROM (VALUES {_values(width, len(chunk))}) AS v "
            f"WHERE {table}.{key} = v.column{width}{guard}"
        )
        flat = tuple(chain.from_iterable(chunk))
        changed += int(connection.exec_driver_sql(statement, flat).rowcount)
    return changed


def insert_rows(
    connection: Connection,
    table: str,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    *,
    conflict: str = "",
    types: Sequence[str] = (),
) -> None:
    """INSERT ``rows`` (one value per column each) into ``table``; ``conflict`` is an
    ``ON CONFLICT ...`` clause both databases take. With the columns' PostgreSQL
    ``types``, PostgreSQL takes the batch as one statement of arrays (``unnest``):
    one round trip, not one a row."""
    if not rows:
        return
    names, tail = ", ".join(columns), f" {conflict}" if conflict else ""
    if connection.dialect.name == "postgresql" and types:
        arrays = ", ".join(f"%s::{kind}[]" for kind in types)
        connection.exec_driver_sql(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){tail}",
            tuple(list(column) for column in zip(*rows, strict=True)),
        )
        return
    if connection.dialect.name == "postgresql":
        marks = ", ".join(placeholder(connection) for _ in columns)
        run_many(connection, f"INSERT INTO {table} ({names}) VALUES ({marks}){tail}", rows)
        return
    for chunk in _chunks(rows):
        flat = tuple(chain.from_iterable(chunk))
        connection.exec_driver_sql(
            f"INSERT INTO {table} ({names}) VALUES {_values(len(columns), len(chunk))}{tail}",
            flat,
        )


def rows_by_ids(connection: Connection, query: str, ids: Iterable[str]) -> list[Sequence[Any]]:
    """``query`` (a SELECT whose first column is ``id``) for the rows with these ids,
    through the driver: values come as the driver gives them (see ``json_value``,
    ``date_text``)."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    mark = placeholder(connection)
    found: list[Sequence[Any]] = []
    for start in range(0, len(wanted), 4096):  # within every driver's parameter limit
        chunk = padded(wanted[start : start + 4096])
        found.extend(
            connection.exec_driver_sql(
                f"{query} WHERE id IN ({', '.join(mark for _ in chunk)})", tuple(chunk)
            ).all()
        )
    return found


def padded(values: Sequence[T]) -> list[T]:
    """``values`` for an ``IN (…)`` list, made up to a power of two by repeating the
    last: the same condition, and a statement of a few sizes only, each parsed once
    and then found in the driver's statement cache."""
    if not values:
        return []
    size = 1 << (len(values) - 1).bit_length()
    return [*values, *([values[-1]] * (size - len(values)))]


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
