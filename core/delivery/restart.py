"""Restarting a run for the workers (``msgrun run restart --detach``)."""

from __future__ import annotations

from core.clock import Clock
from core.delivery import registry, transitions
from core.storage.database import Database


def mark_for_workers(
    database: Database, run_id: int, clock: Clock, *, resend_unknown: bool
) -> None:
    """Make the run `running` with no lease, so that the next worker delivers it."""
    with database.connect() as connection:
        now = clock.now()
        registry.recover_run(connection, run_id, now)
        if resend_unknown:
            transitions.resend_unknown(connection, run_id, now)
        transitions.restart(connection, run_id)
        registry.queued_for_workers(connection, run_id, now)
