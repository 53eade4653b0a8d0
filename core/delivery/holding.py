"""Who delivers a run now, and whether its delivery was interrupted (domain.md, "An
interrupted delivery shows").

A run is delivered by the process holding its lease (``run start``/``restart``,
a worker on SQLite) or by the workers sharing it (``run_share``, PostgreSQL).
A process that leaves a run unfinished, or dies, leaves its name on the run's
lease (``registry.release_lease``, ``registry.left_unfinished``; a process
killed keeps its lease until it lapses). A run is **interrupted** when it is
`running` or `stopping`, some process has delivered it, and none delivers it
now: no live lease, no live worker sharing it. A process of this machine is
known gone at once (``processes``: its pid, a zombie, or a pid reused); one
elsewhere once its lease lapses. A run created with ``--detach`` (or queued by
``run restart --detach``) that no worker has taken yet names nobody, and a
`waiting` run is not delivered by design: neither is interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from core.delivery import processes, queries
from core.run_info import RunInfo
from core.states import BEING_DELIVERED, WAITING
from core.storage.models import RunShare, Worker, table_of
from core.storage.sql import database_now


@dataclass(frozen=True)
class Holder:
    """A process that delivers a run, or delivered it and is gone."""

    host: str
    pid: int
    live: bool

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid}

    def words(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass(frozen=True)
class Holding:
    """Who delivers one run, as far as the database and this machine know."""

    holders: tuple[Holder, ...] = ()
    interrupted: bool = False

    @property
    def live(self) -> tuple[Holder, ...]:
        return tuple(h for h in self.holders if h.live)

    @property
    def held_by(self) -> tuple[Holder, ...]:
        """The processes delivering it now; when none, those that delivered it last."""
        return self.live or self.holders


NOBODY = Holding()


def holdings(connection: Connection, runs: Sequence[RunInfo], now: datetime) -> dict[int, Holding]:
    """Each `running` or `stopping` run's holding (others: ``NOBODY``), in one read.

    ``now``: the clock the runs' leases are measured on (the delivering
    processes'); worker leases are measured on the database's.
    """
    result = {run.id: NOBODY for run in runs}
    open_runs = [run for run in runs if run.state in BEING_DELIVERED]
    if not open_runs:
        return result
    share, worker = table_of(RunShare), table_of(Worker)
    db_now = database_now(connection)
    shared: dict[int, list[Any]] = {}
    for row in connection.execute(
        select(share.c.run_id, share.c.worker_id, worker.c.host, worker.c.pid, worker.c.expires_at)
        .select_from(share.outerjoin(worker, worker.c.id == share.c.worker_id))
        .where(share.c.run_id.in_([run.id for run in open_runs]))
    ):
        shared.setdefault(row.run_id, []).append(row)
    for run in open_runs:
        result[run.id] = _holding(run, shared.get(run.id, []), now, db_now)
    return result


def _holding(run: RunInfo, shares: list[Any], now: datetime, db_now: datetime) -> Holding:
    found: dict[tuple[str, int], bool] = {}  # (host, pid) → live
    anyone = False
    if run.lease_owner is not None:
        anyone = True
        named = processes.named(run.lease_owner)
        leased = run.lease_expires_at is not None and run.lease_expires_at > now
        if named is not None:
            found[(named.host, named.pid)] = leased and not named.gone()
        elif leased:  # a name it cannot read: the lease alone says it lives
            return Holding((), False)
    for row in shares:
        anyone = True
        named = processes.named(row.worker_id)
        host = row.host if row.host is not None else (named.host if named else None)
        pid = row.pid if row.pid is not None else (named.pid if named else None)
        live = (
            row.expires_at is not None
            and row.expires_at >= db_now
            and not (named is not None and named.gone())
        )
        if host is None or pid is None:
            if live:
                return Holding((), False)
            continue
        found[(host, pid)] = found.get((host, pid), False) or live
    holders = tuple(Holder(host, pid, live) for (host, pid), live in found.items())
    return Holding(holders, anyone and not any(h.live for h in holders))


def holding(connection: Connection, run: RunInfo, now: datetime) -> Holding:
    return holdings(connection, [run], now)[run.id]


@dataclass(frozen=True)
class Waiting:
    """A `waiting` run: when its next recipient is due, and the ``msgrun worker``
    processes alive to send it then (none: nothing will, until someone starts one or
    restarts the run)."""

    next_due: datetime | None
    workers: tuple[Holder, ...]


def live_workers(connection: Connection) -> tuple[Holder, ...]:
    """The ``msgrun worker`` processes alive now (their leases measured on the
    database's clock; one of this machine whose process is gone is not counted)."""
    worker = table_of(Worker)
    rows = connection.execute(
        select(worker.c.id, worker.c.host, worker.c.pid)
        .where(worker.c.expires_at >= database_now(connection), worker.c.id.like("worker:%"))
        .order_by(worker.c.host, worker.c.pid)
    ).all()
    alive = []
    for row in rows:
        named = processes.named(row.id)
        if named is not None and named.gone():
            continue
        alive.append(Holder(row.host, row.pid, True))
    return tuple(alive)


def waiting(connection: Connection, run: RunInfo) -> Waiting | None:
    """``Waiting`` for a `waiting` run, else None."""
    if run.state != WAITING:
        return None
    return Waiting(queries.next_due(connection, run.id), live_workers(connection))
