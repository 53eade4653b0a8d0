"""A run as every reader sees it: its row and its counts by state (``RunInfo``).

Below delivery, views and the command line alike: a run is read here, by id
(``get_run``, ``read_run``) or newest first (``list_runs``), its counters
summed in one indexed read (``read_counts``). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from core.states import RECIPIENT_STATES
from core.storage.database import Database
from core.storage.models import MessageRun, RunCount, table_of


class UnknownRun(LookupError):
    """No run has that id (bad usage: exit 2)."""


@dataclass
class RunInfo:
    id: int
    definition_id: str
    smtp_profile_id: str
    state: str
    planned_at: datetime
    created_at: datetime
    started_by: str
    ended_at: datetime | None
    stop_requested_at: datetime | None
    stop_requested_by: str | None
    error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    counts: dict[str, int]
    # The run this one follows up, else None.
    follow_up_of: int | None = None

    def lease_live(self, now: datetime) -> bool:
        return (
            self.lease_owner is not None
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_counts(connection: Connection, run_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Counts by state for some runs: one indexed read, however large the runs."""
    counts: dict[int, dict[str, int]] = {
        run_id: dict.fromkeys(RECIPIENT_STATES, 0) for run_id in run_ids
    }
    table = table_of(RunCount)
    for run_id, state, n in connection.execute(
        select(table.c.run_id, table.c.state, func.sum(table.c.n))
        .where(table.c.run_id.in_(list(run_ids)))
        .group_by(table.c.run_id, table.c.state)
    ):
        counts[run_id][state] = int(n)
    return counts


def _run_info(row: Any, counts: dict[str, int]) -> RunInfo:
    return RunInfo(
        id=row.id,
        definition_id=row.definition_id,
        smtp_profile_id=row.smtp_profile_id,
        state=row.state,
        planned_at=row.planned_at,
        created_at=row.created_at,
        started_by=row.started_by,
        ended_at=row.ended_at,
        stop_requested_at=row.stop_requested_at,
        stop_requested_by=row.stop_requested_by,
        error=row.error,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        counts=counts,
        follow_up_of=row.follow_up_of,
    )


def get_run(database: Database, run_id: int) -> RunInfo:
    with database.connect() as connection:
        return read_run(connection, run_id)


def read_run(connection: Connection, run_id: int) -> RunInfo:
    table = table_of(MessageRun)
    row = connection.execute(select(table).where(table.c.id == run_id)).first()
    if row is None:
        raise UnknownRun(f"unknown run {run_id}")
    return _run_info(row, read_counts(connection, [run_id])[run_id])


def list_runs(database: Database, limit: int = 100) -> list[RunInfo]:
    """The newest runs first."""
    table = table_of(MessageRun)
    with database.connect() as connection:
        rows = connection.execute(select(table).order_by(table.c.id.desc()).limit(limit)).all()
        counts = read_counts(connection, [row.id for row in rows])
    return [_run_info(row, counts[row.id]) for row in rows]
