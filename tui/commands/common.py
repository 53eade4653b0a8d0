"""What several commands share: opening the database, reading ``--at``, finding a run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core import suggested
from core.clock import BadInstant, SystemClock, parse_instant
from core.run_info import RunInfo, UnknownRun, get_run
from core.storage import Database, DatabaseUnavailable, DatabaseUrlError, open_database
from core.storage.database import normalise_url, resolve_url, sqlite_path
from tui.errors import OperationFailed, UsageError
from tui.next_steps import db_option


def database(url: str | None, *, create: bool = False) -> Database:
    """The database a command works on; only ``create`` makes a new one. The commands its
    messages suggest name it as this one was named (``--db``)."""
    suggested.name_database(db_option(url))
    try:
        return open_database(url, create=create)
    except DatabaseUrlError as error:
        raise UsageError(str(error)) from None
    except DatabaseUnavailable as error:
        raise OperationFailed(str(error)) from None


def new_sqlite_file(url: str | None) -> Path | None:
    """The SQLite file ``url`` names when there is none yet (else None)."""
    try:
        parsed = normalise_url(resolve_url(url))
    except DatabaseUrlError as error:
        raise UsageError(str(error)) from None
    if parsed.drivername != "sqlite":
        return None
    path = sqlite_path(parsed)
    return None if path.exists() else path


def instant(text: str | None) -> datetime:
    """``--at`` as typed, or now."""
    if text is None:
        return SystemClock().now()
    try:
        return parse_instant(text)
    except BadInstant as error:
        raise UsageError(f"--at: {error}") from None


def run_id_of(text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"unknown run {text!r} (run ids are numbers; see msgrun run list)")
    return int(text)


def existing_run(db: Database, text: str) -> RunInfo:
    try:
        return get_run(db, run_id_of(text))
    except UnknownRun as error:
        raise UsageError(f"{error} (see msgrun run list)") from None
