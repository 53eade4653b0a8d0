"""Restarting a run for the workers (``msgrun run restart --detach``)."""

from __future__ import annotations

from core.clock import Clock
from core.delivery import store
from core.delivery.states import RUNNING
from core.storage.database import Database


def mark_for_workers(
    database: Database, run_id: int, clock: Clock, *, resend_unknown: bool
) -> None:
    """Make the run `running` with no lease, so that the next worker delivers it."""
    with database.connect() as connection:
        now = clock.now()
        store.recover_orphans(connection, run_id, now)
        if resend_unknown:
            store.resend_unknown(connection, run_id, now)
        store.set_state(connection, run_id, RUNNING, clear_stop=True)
