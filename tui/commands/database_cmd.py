"""``msgrun db upgrade``: bring the schema to the newest migration."""

from __future__ import annotations

import argparse

from core.storage import DatabaseUnavailable, DatabaseUrlError, open_database
from core.storage.database import migration_lock
from tui.errors import OperationFailed, UsageError


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    db = commands.add_parser("db", help="database maintenance")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = actions.add_parser(
        "upgrade",
        parents=[common],
        help="apply every migration not yet applied (also done on first use)",
    )
    upgrade.set_defaults(handler=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    from core.storage.migrate import current_revision, head_revision, upgrade_to_head

    try:
        database = open_database(args.db, migrate=False)
    except DatabaseUrlError as error:
        raise UsageError(str(error)) from None
    except DatabaseUnavailable as error:
        raise OperationFailed(str(error)) from None
    before = current_revision(database)
    with migration_lock(database):
        applied = upgrade_to_head(database)
    after = current_revision(database)
    if applied:
        print(f"{database.describe()}: upgraded from {before or 'empty'} to {after} (newest)")
    else:
        print(f"{database.describe()}: already at {after} (newest is {head_revision(database)})")
    return 0
