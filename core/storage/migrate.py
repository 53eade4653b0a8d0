"""Alembic, driven from code: the schema is brought current on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class Migratable(Protocol):
    """What migrating needs of a database (``core.storage.database.Database``, which
    imports this module when it must migrate: this one does not import it back)."""

    engine: Engine
    url: URL


def alembic_config(database: Migratable) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database.url.render_as_string(hide_password=False))
    return config


def head_revision(database: Migratable) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database)).get_current_head()


def current_revision(database: Migratable) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(database: Migratable) -> bool:
    """Apply every migration not yet applied. Returns True when one was applied."""
    if current_revision(database) == head_revision(database):
        return False
    config = alembic_config(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return True
