"""The msgrun commands that core's messages suggest, written so that they can be run as
they stand: with the ``--db`` the command line was given (``name_database``, once a
process, by the command line; nothing by default, when the suggested command finds the
same database by itself: ``MSGRUN_DB`` or the default file)."""

from __future__ import annotations

_db_option = ""


def name_database(option: str) -> None:
    """`` --db URL`` (its password masked) for every command suggested from now on, or ""."""
    global _db_option
    _db_option = option


def command(words: str) -> str:
    """``msgrun <words>``, with the database's ``--db`` when one was named."""
    return f"msgrun {words}{_db_option}"
