"""Storage: the typed models and the one way to open a database."""

from core.storage.database import (
    Database,
    DatabaseUnavailable,
    DatabaseUrlError,
    open_database,
    resolve_url,
)

__all__ = ["Database", "DatabaseUnavailable", "DatabaseUrlError", "open_database", "resolve_url"]
