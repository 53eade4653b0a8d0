"""Shared fixtures: databases on SQLite and on the real PostgreSQL, and test data.

PostgreSQL: a database of its own per test session on the server named by
MSGRUN_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test),
emptied between tests. In CI (CI=true) an unreachable server fails the
PostgreSQL tests instead of skipping them.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from core import suggested
from core.interchange import ImportOutcome, import_text
from core.interchange.files import anchor_folder
from core.storage import Database, open_database
from core.storage.models import Base
from tests.pg_databases import create_database, drop_database

PG_SERVER = os.environ.get("MSGRUN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "sample"
BLUE_LAGOON = SAMPLES / "blue-lagoon-pools.json"
SUNNY_SIDE = SAMPLES / "sunny-side-photos.json"
# The instant the sample's story is told at: 10:00 on 2026-11-23 in Sydney.
STORY_AT = "2026-11-23T10:00:00+11:00"


@pytest.fixture(autouse=True)
def _no_database_named() -> Iterator[None]:
    """A command run in this process names its database for the commands core suggests
    (``core.suggested``): the next test starts without it, as a new process would."""
    yield
    suggested.name_database("")


def _pg_server_url() -> str | None:
    """The admin URL, or None when the server cannot be reached."""
    try:
        engine = create_engine(PG_SERVER, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return PG_SERVER
    except Exception:
        return None


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session; dropped at the end."""
    server = _pg_server_url()
    if server is None:
        message = f"PostgreSQL is not reachable at {PG_SERVER}"
        if os.environ.get("CI"):
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    name, url = create_database(server, "msgrun_test")
    try:
        yield url
    finally:
        drop_database(server, name)


def empty_all_tables(database: Database) -> None:
    """Every table emptied but the database's own secrets (made by its migration)."""
    tables = [t for t in Base.metadata.sorted_tables if t.name != "msgrun_secret"]
    names = ", ".join(f'"{t.name}"' for t in tables)
    with database.connect() as connection:
        if database.dialect == "postgresql":
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                connection.execute(table.delete())


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'msgrun.db'}")
    yield database
    database.dispose()


@pytest.fixture
def postgresql_db(pg_url: str) -> Iterator[Database]:
    database = open_database(pg_url)
    empty_all_tables(database)
    yield database
    database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db(request: pytest.FixtureRequest) -> Database:
    """The same test on SQLite and on PostgreSQL."""
    fixture = "sqlite_db" if request.param == "sqlite" else "postgresql_db"
    database: Database = request.getfixturevalue(fixture)
    return database


def load(database: Database, document: dict[str, Any] | str | bytes) -> ImportOutcome:
    """Import a document (a dict is serialised); assert nothing about the outcome."""
    payload = json.dumps(document) if isinstance(document, dict) else document
    return import_text(database, payload)


def load_ok(database: Database, document: dict[str, Any]) -> ImportOutcome:
    outcome = load(database, document)
    assert outcome.ok, [str(p) for p in outcome.problems]
    return outcome


def sample(path: Path = BLUE_LAGOON) -> dict[str, Any]:
    """A sample file as JSON, its documents folder made absolute as an import of the file
    would (relative to the file's folder)."""
    data: dict[str, Any] = json.loads(path.read_text())
    anchor_folder(data, str(path.parent))
    return data


MINIMAL: dict[str, Any] = {
    "format": "msgrun/1",
    "organisation": {"name": "Test Pools", "timezone": "UTC", "sender_verified": True},
    "smtp_profiles": [
        {
            "id": "main",
            "host": "127.0.0.1",
            "port": 2525,
            "security": "none",
            "from_address": "billing@testpools.example.com",
        }
    ],
    "billing_methods": [{"id": "card", "name": "Card on file", "send_rules": [{"offset_days": 0}]}],
    "customers": [
        {
            "id": "C1",
            "name": "Ana",
            "cluster": "residential",
            "contacts": [
                {
                    "id": "C1-1",
                    "name": "Ana",
                    "allow_email": True,
                    "addresses": [{"address": "ana@example.org", "key": "billing"}],
                }
            ],
            "services": [{"id": "S1", "status": "active", "allow_billing_email": True}],
        }
    ],
    "documents": [
        {
            "id": "D1",
            "kind": "invoice",
            "number": "2026-0001",
            "status": "approved",
            "customer": "C1",
            "service": "S1",
            "billing_method": "card",
            "due_date": "2026-11-23",
        }
    ],
    "definitions": [
        {
            "id": "inv",
            "name": "Invoice email",
            "kind": "invoice",
            "address_key": "billing",
            "smtp_profile": "main",
            "trigger": {"type": "manual"},
            "dedup": "none",
            "template": {"subject": "Invoice {{ document.label }}", "text": "Hello"},
        }
    ],
}


@pytest.fixture
def minimal() -> dict[str, Any]:
    """A small valid file: one customer, one address, one approved invoice, one definition."""
    return copy.deepcopy(MINIMAL)


def url_of(database: Database) -> str:
    """The database's URL as a command line takes it (``--db``), password included."""
    return database.url.render_as_string(hide_password=False)


@pytest.fixture(params=["here", "sender-processes"])
def sending_ways(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Deliveries send from the delivering process, or from sender processes (as a
    large run does): the same promises hold both ways. Used by delivery test modules
    with ``pytest.mark.usefixtures("sending_ways")``."""
    if request.param == "sender-processes":
        from core.delivery import policy

        monkeypatch.setattr(
            policy, "sender_processes", lambda setting, **facts: min(2, facts["max_connections"])
        )
    return str(request.param)
