"""Telling other processes that a run changed: PostgreSQL's NOTIFY, heard with LISTEN.

Every change of a run's state (``transitions.run_transition``, ``resume``) and
every new run (``starting.create_run``) says so on the channel ``msgrun_runs``, in
the same transaction (PostgreSQL delivers it when that commits). A console on
PostgreSQL listens (``RunChanges``) and shows a run started, stopped or ended by
another process, on another machine too, within moments instead of at its next
poll. On SQLite nothing is said: the console polls.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, text

from core.storage.database import Database

CHANNEL = "msgrun_runs"
# How often the listening thread looks whether it is to stop.
STOP_CHECK_SECONDS = 0.5


def run_changed(connection: Connection, run_id: int) -> None:
    """Say that run ``run_id`` changed (PostgreSQL; nothing on SQLite)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_notify(:channel, :run)"), {"channel": CHANNEL, "run": str(run_id)}
        )


class RunChanges:
    """Listens for changed runs in a thread of its own, on a connection of its own, and
    calls ``on_change(run_id)`` from that thread for each (PostgreSQL only)."""

    def __init__(self, database: Database, on_change: Callable[[int], None]) -> None:
        self.database = database
        self.on_change = on_change
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.listening = threading.Event()  # set once LISTEN is in force

    @staticmethod
    def possible(database: Database) -> bool:
        return database.engine.dialect.name == "postgresql"

    def start(self) -> RunChanges:
        self.thread = threading.Thread(target=self._listen, name="msgrun-listen", daemon=True)
        self.thread.start()
        return self

    def _listen(self) -> None:
        # A connection of the pool's, kept for the purpose and never returned mid-use.
        raw: Any = None
        try:
            raw = self.database.engine.raw_connection()
            connection = raw.driver_connection
            connection.autocommit = True
            connection.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            while not self.stopping.is_set():
                for notice in connection.notifies(timeout=STOP_CHECK_SECONDS):
                    with contextlib.suppress(ValueError):
                        self.on_change(int(notice.payload))
        except Exception:  # the database went away: the console goes on polling
            return
        finally:
            self.listening.set()
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.invalidate()  # not back to the pool: it was LISTENing

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=2 * STOP_CHECK_SECONDS + 1)
