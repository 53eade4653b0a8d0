"""Opening databases: URLs, pragmas, migrations on first use, models == migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from core.storage import Database, DatabaseUnavailable, DatabaseUrlError, open_database
from core.storage.database import SCHEMA_REVISION, normalise_url, resolve_url
from core.storage.migrate import alembic_config, current_revision, head_revision
from core.storage.models import Base


def test_migrations_match_the_models(db: Database) -> None:
    assert current_revision(db) == head_revision(db)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_the_schema_revision_known_to_the_code_is_the_newest_migration(db: Database) -> None:
    # open_database skips Alembic when the database is at SCHEMA_REVISION.
    assert head_revision(db) == SCHEMA_REVISION


def test_a_database_behind_the_code_is_upgraded_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    database = open_database(f"sqlite:///{path}")
    config = alembic_config(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    assert current_revision(database) == "0003"
    again = open_database(f"sqlite:///{path}")
    assert current_revision(again) == SCHEMA_REVISION
    with again.engine.connect() as connection:
        columns = [row[1] for row in connection.execute(text("PRAGMA table_info(run_count)"))]
    assert "shard" in columns


def test_sqlite_uses_wal_and_foreign_keys(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_first_use_creates_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    database = open_database(f"sqlite:///{path}")
    assert path.exists()
    assert current_revision(database) == head_revision(database)
    # Opening again applies nothing and keeps the data.
    again = open_database(f"sqlite:///{path}")
    assert current_revision(again) == head_revision(again)


def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSGRUN_DB", raising=False)
    assert resolve_url(None) == "sqlite:///msgrun.db"
    monkeypatch.setenv("MSGRUN_DB", "sqlite:///env.db")
    assert resolve_url(None) == "sqlite:///env.db"
    assert resolve_url("sqlite:///flag.db") == "sqlite:///flag.db"


def test_postgresql_urls_mean_psycopg() -> None:
    for raw in ("postgresql://u@h:5432/d", "postgresql+psycopg://u@h:5432/d", "postgres://u@h/d"):
        assert normalise_url(raw).drivername == "postgresql+psycopg"


@pytest.mark.parametrize("raw", ["mysql://u@h/d", "not a url", "sqlite://", "sqlite:///:memory:"])
def test_bad_urls_are_refused(raw: str) -> None:
    with pytest.raises(DatabaseUrlError):
        open_database(raw)


def test_an_unreachable_server_is_a_clear_failure() -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot open"):
        open_database("postgresql://postgres@127.0.0.1:1/nothing")


def test_a_missing_folder_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        open_database(f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}")
