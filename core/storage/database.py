"""Opening a database: URL rules, SQLite pragmas, migrations on first use.

``open_database(url)`` is the one way in. It accepts ``sqlite:///PATH`` and
``postgresql+psycopg://USER@HOST:PORT/DB`` (``postgresql://`` means the same),
turns SQLite into WAL mode with foreign keys on, and brings the schema to the
newest migration before handing the database out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from core import settings

T = TypeVar("T")
# The newest migration in core/migrations/versions (a test keeps the two equal):
# a database already there is opened without loading Alembic at all.
SCHEMA_REVISION = "0016"
# deadlock_detected, serialization_failure: the server undid the transaction.
RETRYABLE = {"40P01", "40001"}


class DatabaseUrlError(ValueError):
    """The URL is not one msgrun understands (bad usage: exit 2)."""


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or opened (exit 1)."""


def resolve_url(explicit: str | None) -> str:
    """``--db`` first, then ``MSGRUN_DB``, then ``sqlite:///msgrun.db``; SettingError
    for a MSGRUN_DB that is not a database URL.

    An empty ``--db`` is a mistake (an unset shell variable, say), not a
    request for the default.
    """
    if explicit is not None and not explicit.strip():
        raise DatabaseUrlError(
            "--db is empty; give sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
        )
    return explicit or settings.database_url() or settings.DEFAULT_DATABASE_URL


def normalise_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise DatabaseUrlError(
            f"{raw!r} is not a database URL; use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DB"
        ) from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        if not url.database or url.database == ":memory:":
            raise DatabaseUrlError(
                f"{raw!r} names no file; use sqlite:///PATH (an in-memory database keeps nothing)"
            )
        return url.set(drivername="sqlite")
    raise DatabaseUrlError(
        f"{raw!r}: unsupported database {url.drivername!r}; use sqlite:///PATH or "
        "postgresql+psycopg://USER@HOST:PORT/DB"
    )


def describe_url(url: URL) -> str:
    """The URL as it is safe to print: never with a password."""
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@dataclass
class Database:
    """An engine and its session factory, schema already current."""

    engine: Engine
    url: URL
    sessions: sessionmaker[Session]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection in one transaction, for set-based Core statements."""
        with self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A connection in one transaction whose every read sees the database as it was
        at the first: a plan read a page at a time over minutes is one plan (a document
        an import moves meanwhile is on one page, not on two or on none).

        PostgreSQL: REPEATABLE READ (a write of a row another transaction changed
        meanwhile is undone with a serialization failure: ``retry_transient``). SQLite:
        the transaction begun at once (its driver begins one only before a write) — for
        reading only: a write after the reads fails if another process wrote meanwhile.
        """
        with self.engine.connect() as connection:
            if not self.is_sqlite:
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                if self.is_sqlite:
                    connection.exec_driver_sql("BEGIN")
                yield connection

    def run(self, work: Callable[[Connection], T], attempts: int = 5) -> T:
        """``work`` in one transaction, tried again when PostgreSQL breaks a deadlock.

        Workers touch the same rows from many processes; when two
        transactions wait on each other the server cancels one. Its work is
        undone whole, so doing it again is safe.
        """

        def once() -> T:
            with self.engine.begin() as connection:
                return work(connection)

        return retry_transient(once, attempts)

    def describe(self) -> str:
        return describe_url(self.url)

    def dispose(self) -> None:
        self.engine.dispose()


def retry_transient(transaction: Callable[[], T], attempts: int = 5) -> T:
    """Call ``transaction`` again when the server undid it (deadlock, serialization).

    ``transaction`` must be one whole transaction: what the server undid is
    done again from the start, so it must not have effects outside it.
    """
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except DBAPIError as error:
            code = getattr(error.orig, "sqlstate", None)
            if code not in RETRYABLE or attempt == attempts:
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")


def sqlite_path(url: URL) -> Path:
    assert url.database is not None
    return Path(url.database).expanduser().resolve()


def can_write(path: Path) -> bool:
    """Whether this process may write the SQLite file and create its WAL files beside it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def create_database_engine(url: URL, *, read_only: bool = False) -> Engine:
    if url.drivername == "sqlite":
        path = sqlite_path(url)
        folder = path.parent
        if not folder.is_dir():
            raise DatabaseUnavailable(
                f"cannot open {describe_url(url)}: folder {folder} does not exist"
            )
        if read_only:
            # Nothing may be created beside the file (no -wal, -shm): read it as it
            # stands. immutable only when no writer has a WAL open (there is none).
            wal = path.with_name(path.name + "-wal")
            query = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
            engine = create_engine(
                f"sqlite:///file:{quote(str(path))}?{query}&uri=true", connect_args={"timeout": 30}
            )
            event.listen(engine, "connect", _sqlite_read_only_pragmas)
            return engine
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def _sqlite_read_only_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def error_words(error: BaseException) -> str:
    """An error in one line: a database error's own words, without the statement that failed."""
    orig = getattr(error, "orig", None)
    lines = str(orig if orig is not None else error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def schema_revision(connection: Connection) -> str | None:
    """The migration the database is at (None: a new, empty database)."""
    try:
        value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError as error:
        if NOT_A_DATABASE in str(error.orig):
            raise
        connection.rollback()
        return None
    return str(value) if value is not None else None


class DatabaseMissing(DatabaseUrlError):
    """A command that does not create a database was pointed at none (exit 2)."""


class NotAMsgrunDatabase(DatabaseUrlError):
    """The file is not a database, or not msgrun's (exit 2)."""


NOT_A_DATABASE = "file is not a database"


# UPDATE … RETURNING (3.35) reserves recipients; UPDATE … FROM (3.33) records results.
LEAST_SQLITE = (3, 35, 0)


def check_sqlite_library(version: tuple[int, int, int] | None = None) -> None:
    """DatabaseUnavailable when the SQLite library Python was built with is too old for
    msgrun (an older Linux's Python can be), said before anything is done."""
    version = version or sqlite3.sqlite_version_info
    if version < LEAST_SQLITE:
        raise DatabaseUnavailable(
            f"this Python's SQLite library is {'.'.join(map(str, version))}; msgrun needs "
            f"{'.'.join(map(str, LEAST_SQLITE))} or newer (a newer Python has it, or use "
            "PostgreSQL: --db postgresql+psycopg://USER@HOST/DB)"
        )


def open_database(
    raw_url: str | None = None, *, migrate: bool = True, create: bool = True
) -> Database:
    """Open the database named by ``raw_url``; ``create``: create it when there is none.

    Only ``import``, ``db upgrade`` and ``demo`` create a database; every other
    command passes ``create=False``, so a mistyped SQLite path is an error, not
    a new empty database. A SQLite file this process may not write (a
    read-only folder, say) is opened read-only: reading commands work.
    """
    url = normalise_url(resolve_url(raw_url))
    read_only = False
    if url.drivername == "sqlite":
        check_sqlite_library()
        path = sqlite_path(url)
        if path.is_dir():
            raise NotAMsgrunDatabase(f"{path} is a folder, not a msgrun database")
        if not path.exists() and not create:
            raise DatabaseMissing(
                f"no database at {path} ({describe_url(url)}): check the path "
                "(only msgrun import, msgrun db upgrade and msgrun demo create a database)"
            )
        read_only = path.exists() and not can_write(path)
    engine = create_database_engine(url, read_only=read_only)
    connection = _checked(url, engine, engine.connect)
    with connection:
        revision = _checked(url, engine, lambda: schema_revision(connection))
    if revision is None and not create and url.drivername == "sqlite":
        engine.dispose()
        raise NotAMsgrunDatabase(
            f"{describe_url(url)} is not a msgrun database (it is empty; "
            "msgrun import or msgrun db upgrade makes it one)"
        )
    database = Database(
        engine=engine, url=url, sessions=sessionmaker(engine, expire_on_commit=False)
    )
    if revision is None and not read_only:
        # Tables but no migration recorded: another program's database, unless
        # another msgrun is creating it right now (then the lock waits for it).
        with migration_lock(database), engine.connect() as connection:
            foreign = _checked(
                url,
                engine,
                lambda: schema_revision(connection) is None and has_tables(connection),
            )
        if foreign:
            engine.dispose()
            raise NotAMsgrunDatabase(
                f"{describe_url(url)} is not a msgrun database (it holds tables of something else)"
            )
    if migrate and revision != SCHEMA_REVISION:
        if read_only:
            engine.dispose()
            raise DatabaseUnavailable(
                f"{describe_url(url)} needs msgrun db upgrade (schema {revision}, newest "
                f"{SCHEMA_REVISION}), and this process may not write it"
            )
        # Alembic (slow to import) only when there is something to do.
        from core.storage.migrate import upgrade_to_head

        with migration_lock(database):
            upgrade_to_head(database)
    return database


def _checked(url: URL, engine: Engine, read: Callable[[], T]) -> T:
    """``read()``, with a file that is not a database said so (exit 2)."""
    try:
        return read()
    except DBAPIError as error:
        engine.dispose()
        if NOT_A_DATABASE in str(error.orig):
            raise NotAMsgrunDatabase(
                f"{describe_url(url)} is not a msgrun database ({NOT_A_DATABASE})"
            ) from None
        raise DatabaseUnavailable(
            f"cannot open {describe_url(url)}: {error_words(error)}"
        ) from None


def has_tables(connection: Connection) -> bool:
    """Whether the database holds any table (one without alembic_version is not msgrun's)."""
    from sqlalchemy import inspect

    return bool(inspect(connection).get_table_names())


@contextlib.contextmanager
def migration_lock(database: Database) -> Iterator[None]:
    """Keep two processes that open a new database at once from both migrating it.

    SQLite: an exclusive lock on ``NAME.migrate-lock``, removed by its holder
    before it lets go; a process that got the lock on a file already removed
    tries again on the new one, so the lock holds and no file stays behind.
    """
    if database.is_sqlite:
        path = sqlite_path(database.url)
        lock_path = path.with_name(path.name + ".migrate-lock")
        while True:
            handle = open(lock_path, "a")  # noqa: SIM115 (closed below, on every path)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    current = os.stat(lock_path).st_ino
                except FileNotFoundError:
                    current = None
                if current != os.fstat(handle.fileno()).st_ino:
                    continue  # its holder removed it meanwhile: lock the new one
                try:
                    yield
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lock_path)
                return
            finally:
                handle.close()
    with database.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(727274)"))
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(727274)"))
            connection.commit()
