"""Delivering processes as the database knows them: the worker registry, leases,
reservations, shares of runs, connection slots, and reaping the dead.

Every delivering process (a ``msgrun worker``, or ``run start``/``restart``
delivering in the foreground) has a ``worker`` row whose lease it renews
every few seconds, measured on the database's clock so that machines with
different clocks agree. What a process holds carries its id:

- recipients it has reserved (``recipient.claimed_by``): nobody else takes them;
- the runs it takes part in (``run_share``): the profile's connections are
  shared out among them;
- the profile connection slots it holds (``profile_slot``): a profile's
  ``max_connections`` hold across every process.

When a process dies its lease lapses; whichever process reaps it next moves
its ``sending`` recipients to ``unknown`` (they may have been sent) and gives
what else it reserved back to the pool. Reaping takes the dead worker's row with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two reapers never do it twice.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from core.delivery import processes, transitions
from core.settings import LEASE_SECONDS
from core.states import BEING_DELIVERED, SENDING, STOPPING
from core.storage.database import Database
from core.storage.models import (
    MessageRun,
    ProfileSlot,
    Recipient,
    RunShare,
    Worker,
    table_of,
)
from core.storage.sql import database_now, insert_ignoring

WORKER = table_of(Worker)
SHARE = table_of(RunShare)
SLOT = table_of(ProfileSlot)
RECIPIENT = table_of(Recipient)
RUN = table_of(MessageRun)


def new_worker_id(role: str) -> str:
    """``worker:host:pid:nonce`` or ``run:host:pid:nonce`` (pids are reused; the nonce is
    not, and carries the process's start time: ``processes``)."""
    return processes.process_id(role)


def register(connection: Connection, worker_id: str, seconds: float) -> datetime:
    now = database_now(connection)
    connection.execute(
        insert(WORKER).values(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            expires_at=now + timedelta(seconds=seconds),
        )
    )
    return now


def renew(connection: Connection, worker_id: str, seconds: float) -> bool:
    """Extend the lease; False when it lapsed and the worker was reaped (its reservations are
    gone)."""
    now = database_now(connection)
    result = connection.execute(
        update(WORKER)
        .where(WORKER.c.id == worker_id)
        .values(expires_at=now + timedelta(seconds=seconds))
    )
    return result.rowcount == 1


class Heartbeat:
    """Renews a worker's lease from its own thread, whatever the event loop is busy with.

    ``lost`` is set when a renewal finds the worker reaped (its lease lapsed):
    what it had reserved is no longer its own, and it must stop sending.
    """

    def __init__(self, database: Database, worker_id: str, seconds: float, every: float) -> None:
        self.database = database
        self.worker_id = worker_id
        self.seconds = seconds
        self.every = every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="msgrun-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                renewed = self.database.run(lambda c: renew(c, self.worker_id, self.seconds))
            except Exception:  # the database is unreachable for a moment: try again
                continue
            if not renewed:
                self.lost.set()
                return


def other_live_workers(connection: Connection, worker_id: str) -> list[str]:
    """Live ``msgrun worker`` processes other than this one.

    A worker of this machine whose process is gone (``kill -9``) is not
    waited for: its lease is ended now, so that the next reap recovers it.
    """
    now = database_now(connection)
    rows = connection.execute(
        select(WORKER.c.id, WORKER.c.host, WORKER.c.pid).where(
            WORKER.c.expires_at >= now, WORKER.c.id != worker_id, WORKER.c.id.like("worker:%")
        )
    ).all()
    live = []
    for row in rows:
        if row.host == socket.gethostname() and _gone(row.id, row.pid):
            connection.execute(
                update(WORKER)
                .where(WORKER.c.id == row.id)
                .values(expires_at=now - timedelta(seconds=1))
            )
            continue
        live.append(row.id)
    return live


def lapse_dead_here(connection: Connection, run_id: int, now: datetime) -> bool:
    """A process of this machine that is gone (``kill -9``) is not waited for.

    Its worker row lapses now (the next reap makes its `sending` recipients
    `unknown`) and so does its lease on ``run_id``; returns whether that lease
    was such a one.
    """
    db_now = database_now(connection)
    here = socket.gethostname()
    for row in connection.execute(
        select(WORKER.c.id, WORKER.c.pid).where(
            WORKER.c.host == here, WORKER.c.expires_at >= db_now
        )
    ).all():
        if _gone(row.id, row.pid):
            connection.execute(
                update(WORKER)
                .where(WORKER.c.id == row.id)
                .values(expires_at=db_now - timedelta(seconds=1))
            )
    owner = connection.execute(
        select(RUN.c.lease_owner).where(
            RUN.c.id == run_id, RUN.c.lease_owner.is_not(None), RUN.c.lease_expires_at >= now
        )
    ).scalar()
    process = processes.named(owner) if owner else None
    if process is None or not process.gone():
        return False
    connection.execute(
        update(RUN)
        .where(RUN.c.id == run_id, RUN.c.lease_owner == owner)
        .values(lease_expires_at=now - timedelta(seconds=1))
    )
    return True


def _gone(worker_id: str, pid: int) -> bool:
    """The worker of this machine ``worker_id`` (process ``pid``) is gone."""
    process = processes.named(worker_id)
    return processes.process_gone(pid, process.started if process is not None else None)


def retire(connection: Connection, worker_id: str) -> None:
    """A clean exit: give back every reservation, share and slot, and leave the registry."""
    release_reservations(connection, worker_id)
    connection.execute(delete(SHARE).where(SHARE.c.worker_id == worker_id))
    connection.execute(
        update(SLOT).where(SLOT.c.holder == worker_id).values(holder=None, run_id=None)
    )
    connection.execute(delete(WORKER).where(WORKER.c.id == worker_id))


def release_reservations(connection: Connection, worker_id: str, run_id: int | None = None) -> int:
    """Recipients reserved but not being sent go back to the pool (no state changes)."""
    condition = and_(RECIPIENT.c.claimed_by == worker_id, RECIPIENT.c.state != SENDING)
    if run_id is not None:
        condition = and_(condition, RECIPIENT.c.run_id == run_id)
    return connection.execute(update(RECIPIENT).where(condition).values(claimed_by=None)).rowcount


# -- reaping the dead --------------------------------------------------------------


def reap(connection: Connection) -> dict[int, int]:
    """Recover what dead workers left; returns run id → recipients made ``unknown``.

    A worker is dead when its lease lapsed; reservations naming a worker that has
    no row at all (reaped, or never registered) are dead too.
    """
    now = database_now(connection)
    dead_query = select(WORKER.c.id).where(WORKER.c.expires_at < now).order_by(WORKER.c.id)
    if connection.dialect.name == "postgresql":
        dead_query = dead_query.with_for_update(skip_locked=True)
    dead = list(connection.execute(dead_query).scalars())
    # Reservations by ids that have no worker row at all.
    known = select(WORKER.c.id)
    strays = list(
        connection.execute(
            select(RECIPIENT.c.claimed_by)
            .where(RECIPIENT.c.claimed_by.is_not(None), RECIPIENT.c.claimed_by.notin_(known))
            .distinct()
        ).scalars()
    )
    made_unknown: Counter[int] = Counter()
    for worker_id in dead:
        # The runs it delivered are left unfinished, and say so (``left_unfinished``).
        for run_id in connection.execute(
            select(SHARE.c.run_id).where(SHARE.c.worker_id == worker_id)
        ).scalars():
            left_unfinished(connection, run_id, worker_id, now)
    for worker_id in [*dead, *(s for s in strays if s is not None)]:
        for run_id, n in transitions.make_unknown(connection, worker_id, now).items():
            made_unknown[run_id] += n
        retire(connection, worker_id)
    return dict(made_unknown)


# -- taking part in a run ------------------------------------------------------------


def join(connection: Connection, run_id: int, worker_id: str, profile_id: str) -> None:
    exists = connection.execute(
        select(SHARE.c.run_id).where(SHARE.c.run_id == run_id, SHARE.c.worker_id == worker_id)
    ).first()
    if exists is None:
        connection.execute(
            insert(SHARE).values(run_id=run_id, worker_id=worker_id, profile_id=profile_id)
        )


def leave(connection: Connection, run_id: int, worker_id: str) -> None:
    connection.execute(
        delete(SHARE).where(SHARE.c.run_id == run_id, SHARE.c.worker_id == worker_id)
    )
    connection.execute(
        update(SLOT)
        .where(SLOT.c.holder == worker_id, SLOT.c.run_id == run_id)
        .values(holder=None, run_id=None)
    )
    release_reservations(connection, worker_id, run_id)


def run_sharers(connection: Connection, run_id: int, exclude: str | None = None) -> list[str]:
    """The live workers taking part in delivering this run (but ``exclude``)."""
    now = database_now(connection)
    query = (
        select(SHARE.c.worker_id)
        .join(WORKER, WORKER.c.id == SHARE.c.worker_id)
        .where(SHARE.c.run_id == run_id, WORKER.c.expires_at >= now)
        .order_by(SHARE.c.worker_id)
    )
    if exclude is not None:
        query = query.where(SHARE.c.worker_id != exclude)
    return list(connection.execute(query).scalars())


def sharers(connection: Connection, profile_id: str) -> int:
    """How many (live worker, run) pairs deliver through this profile now."""
    now = database_now(connection)
    return int(
        connection.execute(
            select(func.count())
            .select_from(SHARE.join(WORKER, WORKER.c.id == SHARE.c.worker_id))
            .where(SHARE.c.profile_id == profile_id, WORKER.c.expires_at >= now)
        ).scalar_one()
    )


def deliveries_here(connection: Connection) -> int:
    """How many live processes on this machine deliver a run now (workers and ``run
    start``s, the asking one included once it has joined its run)."""
    now = database_now(connection)
    return int(
        connection.execute(
            select(func.count(func.distinct(SHARE.c.worker_id)))
            .select_from(SHARE.join(WORKER, WORKER.c.id == SHARE.c.worker_id))
            .where(WORKER.c.host == socket.gethostname(), WORKER.c.expires_at >= now)
        ).scalar_one()
    )


def runs_sharing(connection: Connection, profile_id: str) -> int:
    """How many runs live workers deliver through this profile now (they take turns)."""
    now = database_now(connection)
    return int(
        connection.execute(
            select(func.count(func.distinct(SHARE.c.run_id)))
            .select_from(SHARE.join(WORKER, WORKER.c.id == SHARE.c.worker_id))
            .where(SHARE.c.profile_id == profile_id, WORKER.c.expires_at >= now)
        ).scalar_one()
    )


def finish_stopping(connection: Connection, now: datetime, run_id: int | None = None) -> list[int]:
    """Runs asked to stop that nobody delivers any more, nor holds a reservation in: stopped.

    ``run_id``: that run only (the last process to leave it stops it at once).
    """
    db_now = database_now(connection)
    live = select(WORKER.c.id).where(WORKER.c.expires_at >= db_now)
    query = select(RUN.c.id).where(
        RUN.c.state == STOPPING,
        or_(RUN.c.lease_owner.is_(None), RUN.c.lease_expires_at < now),
    )
    if run_id is not None:
        query = query.where(RUN.c.id == run_id)
    candidates = list(connection.execute(query).scalars())
    stopped = []
    for candidate in candidates:
        busy = connection.execute(
            select(RECIPIENT.c.id)
            .where(RECIPIENT.c.run_id == candidate, RECIPIENT.c.claimed_by.in_(live))
            .limit(1)
        ).first()
        sharing = connection.execute(
            select(SHARE.c.worker_id)
            .where(SHARE.c.run_id == candidate, SHARE.c.worker_id.in_(live))
            .limit(1)
        ).first()
        if (
            busy is None
            and sharing is None
            and transitions.finish_stopping(connection, candidate, now)
        ):
            stopped.append(candidate)
    return stopped


# -- connection slots ------------------------------------------------------------------


def take_slot(
    connection: Connection, profile_id: str, max_connections: int, worker_id: str, run_id: int
) -> int | None:
    """One of the profile's connection slots for this worker's run, or None when all are held."""
    existing = connection.execute(
        select(func.count()).select_from(SLOT).where(SLOT.c.profile_id == profile_id)
    ).scalar_one()
    if existing < max_connections:
        connection.execute(
            insert_ignoring(connection, SLOT, ["profile_id", "slot"]),
            [
                {"profile_id": profile_id, "slot": n, "holder": None, "run_id": None}
                for n in range(max_connections)
            ],
        )
    now = database_now(connection)
    unheld = or_(
        SLOT.c.holder.is_(None),
        SLOT.c.holder.notin_(select(WORKER.c.id).where(WORKER.c.expires_at >= now)),
    )
    free = (
        select(SLOT.c.slot)
        .where(SLOT.c.profile_id == profile_id, SLOT.c.slot < max_connections, unheld)
        .order_by(SLOT.c.slot)
        .limit(1)
    )
    if connection.dialect.name == "postgresql":
        free = free.with_for_update(skip_locked=True)
    slot = connection.execute(free).scalar()
    if slot is None:
        return None
    # Guarded: on SQLite two processes may have read the same free slot.
    taken = connection.execute(
        update(SLOT)
        .where(SLOT.c.profile_id == profile_id, SLOT.c.slot == slot, unheld)
        .values(holder=worker_id, run_id=run_id)
    )
    return int(slot) if taken.rowcount == 1 else None


def give_slot(connection: Connection, profile_id: str, slot: int, worker_id: str) -> None:
    connection.execute(
        update(SLOT)
        .where(SLOT.c.profile_id == profile_id, SLOT.c.slot == slot, SLOT.c.holder == worker_id)
        .values(holder=None, run_id=None)
    )


# -- a run's lease (a process delivering it alone) ------------------------------


def acquire_lease(
    connection: Connection, run_id: int, owner: str, now: datetime, seconds: float = LEASE_SECONDS
) -> bool:
    """Take the run for ``owner`` unless a live lease of someone else holds it."""
    result = connection.execute(
        update(RUN)
        .where(
            RUN.c.id == run_id,
            or_(
                RUN.c.lease_owner.is_(None),
                RUN.c.lease_expires_at < now,
                RUN.c.lease_owner == owner,
            ),
        )
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
    )
    return result.rowcount == 1


def renew_lease(
    connection: Connection, run_id: int, owner: str, now: datetime, seconds: float = LEASE_SECONDS
) -> bool:
    """Extend the lease; False when ``owner`` no longer holds it."""
    result = connection.execute(
        update(RUN)
        .where(RUN.c.id == run_id, RUN.c.lease_owner == owner)
        .values(lease_expires_at=now + timedelta(seconds=seconds))
    )
    return result.rowcount == 1


# A run left `running` or `stopping` by the process that delivered it keeps that
# process's name on its lease, lapsed this long ago: nothing waits on it, and it
# says that the run was delivered and nobody delivers it now (interrupted:
# ``core.views.holding``). A lease lapsed half as long ago is such a mark too,
# whatever the clocks of the machines that wrote it.
LEFT_AGO = timedelta(hours=1)


def release_lease(connection: Connection, run_id: int, owner: str, now: datetime) -> None:
    """Give the run's lease back at once; a run left unfinished keeps ``owner``'s name on
    a lease lapsed long ago (``LEFT_AGO``)."""
    held = and_(RUN.c.id == run_id, RUN.c.lease_owner == owner)
    connection.execute(
        update(RUN)
        .where(held, RUN.c.state.in_(BEING_DELIVERED))
        .values(lease_expires_at=now - LEFT_AGO)
    )
    connection.execute(
        update(RUN)
        .where(held, RUN.c.state.notin_(BEING_DELIVERED))
        .values(lease_owner=None, lease_expires_at=None)
    )


def left_unfinished(connection: Connection, run_id: int, process: str, now: datetime) -> None:
    """``process`` delivered the run without its lease (a worker sharing it) and no longer
    does: a run left unfinished says so on its lease, as ``release_lease`` leaves it,
    unless a process holds (or has just held) the lease."""
    connection.execute(
        update(RUN)
        .where(
            RUN.c.id == run_id,
            RUN.c.state.in_(BEING_DELIVERED),
            or_(RUN.c.lease_owner.is_(None), RUN.c.lease_expires_at < now - LEFT_AGO / 2),
        )
        .values(lease_owner=process, lease_expires_at=now - LEFT_AGO)
    )


def queued_for_workers(connection: Connection, run_id: int, now: datetime) -> None:
    """The run waits for a worker (``run restart --detach``): no mark of an earlier
    delivery is left on it (a lapsed lease is given back)."""
    connection.execute(
        update(RUN)
        .where(RUN.c.id == run_id, RUN.c.lease_expires_at < now)
        .values(lease_owner=None, lease_expires_at=None)
    )


def recover_run(connection: Connection, run_id: int, now: datetime) -> int:
    """Recipients left `sending` by a process that is gone become `unknown`.

    Dead workers are reaped (their reservations go back, their `sending`
    become `unknown`), and so are this run's `sending` recipients that name no
    process at all (left by a process of an older version).
    """
    reaped = reap(connection)
    orphaned = transitions.make_unknown(connection, None, now, run_id)
    return reaped.get(run_id, 0) + orphaned.get(run_id, 0)
