"""``msgrun worker``: deliver runs from the database until told to stop.

A worker registers itself (a ``worker`` row with a lease on the database's
clock), then, about once a second: starts the runs of routines whose time has
come (``core.triggers.routines``), reaps dead workers (their
``sending`` recipients become ``unknown``, what they reserved goes back), marks
stopped the runs whose stop every process has honoured, and takes up every
run with work due that it does not deliver yet, each in its own task:

- on PostgreSQL, runs are **shared**: every worker delivers every active run,
  reserving recipients in batches with ``FOR UPDATE SKIP LOCKED`` and sharing
  each profile's connections and rate through its slots;
- on SQLite, one worker at a time: a second one is refused with a message
  (SQLite has one writer; many workers only queue for its lock), and the
  worker holds each run's lease alone, as ``run restart`` does.

About once a minute (``bounce_read_seconds``) it also reads the bounce and
complaint sources named in ``MSGRUN_BOUNCE_SOURCES`` (``core.bounces.store.
read_configured_sources``: one worker at a time), in the background; what
goes wrong there is reported to ``on_bounce_error`` and never ends the worker.

On SIGINT/SIGTERM it lets the messages in flight finish, leaves the runs
`running` for the other workers, gives back what it reserved and leaves the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection, and_, exists, or_, select
from sqlalchemy.exc import DBAPIError

from core import settings
from core.bounces.store import ReadSummary, read_configured_sources
from core.clock import Clock
from core.delivery import registry
from core.delivery.deliver import Delivery, LeaseHeld, deliver
from core.delivery.queries import in_state
from core.states import (
    BEING_DELIVERED,
    HELD,
    LEASE_RENEW_SECONDS,
    RETRYING,
    RUNNING,
    WAITING,
)
from core.storage.database import Database
from core.storage.models import MessageRun, Recipient, table_of
from core.triggers import routines

POLL_SECONDS = 1.0
# Bounce and complaint sources (MSGRUN_BOUNCE_SOURCES) are read this often.
BOUNCE_READ_SECONDS = 60.0
# While the database cannot be reached, the worker looks again at most this seldom.
TROUBLE_PAUSE_MOST = 10.0
T = TypeVar("T")


class WorkerRefused(Exception):
    """This worker may not run here (SQLite already has one)."""


def runs_to_deliver(connection: Connection, clock: Clock, shared: bool = False) -> list[int]:
    """Runs with work due now that no foreground process holds alone, oldest first.

    Shared (PostgreSQL): `running` runs and `waiting` runs with something
    due; a stopping run is left to finish stopping. Alone (SQLite): also
    runs left `stopping` by a process that died, to finish their stop.
    """
    run, recipient = table_of(MessageRun), table_of(Recipient)
    now = clock.now()
    free = or_(run.c.lease_owner.is_(None), run.c.lease_expires_at < now)
    # From the partial indexes of the held and the retrying by when they are due: a run
    # holding a million overnight is not read whole every second.
    due_held = exists().where(
        recipient.c.run_id == run.c.id, in_state(HELD), recipient.c.send_after <= now
    )
    due_retry = exists().where(
        recipient.c.run_id == run.c.id,
        in_state(RETRYING),
        recipient.c.next_attempt_at <= now,
    )
    active = [RUNNING] if shared else list(BEING_DELIVERED)
    query = (
        select(run.c.id)
        .where(
            free,
            or_(
                run.c.state.in_(active),
                and_(run.c.state == WAITING, or_(due_held, due_retry)),
            ),
        )
        .order_by(run.c.id)
    )
    return list(connection.execute(query).scalars())


async def work(
    database: Database,
    clock: Clock,
    stop: asyncio.Event,
    *,
    environ: Mapping[str, str] | None = None,
    on_delivery: Callable[[Delivery], None] | None = None,
    on_error: Callable[[int | None, BaseException], None] | None = None,
    poll_seconds: float = POLL_SECONDS,
    bounce_read_seconds: float = BOUNCE_READ_SECONDS,
    on_bounces: Callable[[ReadSummary], None] | None = None,
    on_bounce_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Deliver until ``stop`` is set; WorkerRefused when SQLite already has a worker.

    A delivery that ends on an error is reported to ``on_error`` (with its run
    id) and taken up again on a later round; so is a round that cannot reach
    the database (with None), the worker waiting longer each time: a bad
    moment of the database does not end the worker.
    """
    environ = os.environ if environ is None else environ
    worker = Worker(
        database,
        clock,
        stop,
        environ,
        Reports(on_delivery, on_error, on_bounces, on_bounce_error),
        poll_seconds,
        BounceReading(database, clock, environ, bounce_read_seconds),
    )
    await worker.enrol()
    await worker.refuse_beside_another_on_sqlite()
    worker.start_heartbeat()
    try:
        while not stop.is_set():
            candidates = await worker.tend()
            worker.collect_ended()
            worker.take_up(candidates)
            await worker.wait_for_next_round()
    finally:
        await worker.shut_down()


@dataclass(frozen=True)
class Reports:
    """Where a worker reports what its deliveries and bounce reads came to."""

    on_delivery: Callable[[Delivery], None] | None
    on_error: Callable[[int | None, BaseException], None] | None
    on_bounces: Callable[[ReadSummary], None] | None
    on_bounce_error: Callable[[BaseException], None] | None

    def error(self, run_id: int | None, error: BaseException) -> None:
        """Report a delivery's error (or, with None, a round's); raise it when no one
        listens."""
        if self.on_error is None:
            raise error
        self.on_error(run_id, error)


class Worker:
    """One ``msgrun worker``: its registration, its deliveries, its rounds."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        stop: asyncio.Event,
        environ: Mapping[str, str],
        reports: Reports,
        poll_seconds: float,
        bounces: BounceReading,
    ) -> None:
        self.database = database
        self.clock = clock
        self.stop = stop
        self.environ = environ
        self.reports = reports
        self.poll_seconds = poll_seconds
        self.bounces = bounces
        self.lease_seconds = settings.lease_seconds(environ)
        self.renew_every = min(LEASE_RENEW_SECONDS, self.lease_seconds / 4)
        self.alongside_others = database.engine.dialect.name == "postgresql"
        self.worker_id = registry.new_worker_id("worker")
        self.heartbeat: registry.Heartbeat | None = None
        self.active: dict[int, asyncio.Task[Delivery]] = {}
        self.ended = asyncio.Event()
        self.pause = poll_seconds

    async def in_db(self, job: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(self.database.run, job)

    # -- registration -------------------------------------------------------------------

    async def enrol(self) -> None:
        await self.in_db(lambda c: registry.register(c, self.worker_id, self.lease_seconds))

    async def refuse_beside_another_on_sqlite(self) -> None:
        """WorkerRefused (registration undone) when another worker delivers from this
        SQLite database: SQLite has one writer."""
        if self.alongside_others:
            return
        others = await self.in_db(lambda c: registry.other_live_workers(c, self.worker_id))
        if others:
            await self.in_db(lambda c: registry.retire(c, self.worker_id))
            raise WorkerRefused(
                f"another msgrun worker already delivers from this SQLite database "
                f"({', '.join(others)}, {self.database.describe()}): SQLite has one writer, so "
                "one worker at a time. Stop it first, or use PostgreSQL for many workers "
                "(--db postgresql+psycopg://…)."
            )

    def start_heartbeat(self) -> None:
        self.heartbeat = registry.Heartbeat(
            self.database, self.worker_id, self.lease_seconds, self.renew_every
        ).start()

    async def enrol_again_if_reaped(self) -> None:
        """Reaped while alive (stalled longer than its lease): what it held is gone.
        Its deliveries end; it registers again, under a new id, and carries on.
        Whatever its deliveries did under the old id after the reap is then a stray
        claim, which the next reap recovers (under the same id it would pass for
        live for ever)."""
        heartbeat = self.heartbeat
        if heartbeat is None or not heartbeat.lost.is_set():
            return
        await asyncio.gather(*self.active.values(), return_exceptions=True)
        self.active.clear()
        await asyncio.to_thread(heartbeat.stop)
        self.worker_id = registry.new_worker_id("worker")
        await self.enrol()
        self.start_heartbeat()

    # -- a round ------------------------------------------------------------------------

    async def tend(self) -> list[int]:
        """The round's housekeeping; the runs to deliver now. none while the database
        cannot be reached (reported): the worker then waits longer each round."""
        try:
            await self.enrol_again_if_reaped()
            self.bounces.tend(self.reports.on_bounces, self.reports.on_bounce_error)
            # Routines whose time has come become runs (once, whichever worker sees them).
            await asyncio.to_thread(routines.fire_due, self.database, self.clock)
            candidates = await self.in_db(self._housekeeping)
        except DBAPIError as unreachable:
            # The database is unreachable for a while: say so, wait, try again.
            self.reports.error(None, unreachable)
            self.pause = min(TROUBLE_PAUSE_MOST, max(self.pause * 2, self.poll_seconds))
            return []
        self.pause = self.poll_seconds
        return candidates

    def _housekeeping(self, connection: Connection) -> list[int]:
        registry.reap(connection)
        registry.finish_stopping(connection, self.clock.now())
        return runs_to_deliver(connection, self.clock, self.alongside_others)

    def collect_ended(self) -> None:
        """Report the deliveries that have ended (a lease another process holds is
        not an error: the run is taken up again later)."""
        for run_id, task in list(self.active.items()):
            if task.done():
                del self.active[run_id]
                error = task.exception()
                if error is None and self.reports.on_delivery is not None:
                    self.reports.on_delivery(task.result())
                elif error is not None and not isinstance(error, LeaseHeld):
                    self.reports.error(run_id, error)

    def take_up(self, candidates: list[int]) -> None:
        """Start delivering each run not delivered yet, each in its own task."""
        for run_id in candidates:
            if run_id not in self.active and not self.stop.is_set():
                self.active[run_id] = task = asyncio.create_task(self._deliver(run_id))
                task.add_done_callback(lambda _: self.ended.set())

    async def _deliver(self, run_id: int) -> Delivery:
        assert self.heartbeat is not None
        return await deliver(
            self.database,
            run_id,
            self.clock,
            owner=self.worker_id,
            environ=self.environ,
            stop=self.stop,
            keep_running_on_stop=True,
            worker_id=self.worker_id,
            alongside_others=self.alongside_others,
            worker_lost=self.heartbeat.lost,
            resume_only=True,
        )

    async def wait_for_next_round(self) -> None:
        """Until the pause is over, a stop is asked for, or a delivery ends: a stop is
        then finished, or the run taken up again, without waiting for the next round."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_either(self.stop, self.ended), timeout=self.pause)
        self.ended.clear()

    # -- the end ------------------------------------------------------------------------

    async def shut_down(self) -> None:
        """Let a bounce read and the deliveries under way end, report them, stop the
        heartbeat and leave the registry (an unreachable database: the lease lapses
        and the next reap recovers what it held)."""
        reports = self.reports
        await self.bounces.finish(reports.on_bounces, reports.on_bounce_error)
        results = await asyncio.gather(*self.active.values(), return_exceptions=True)
        if self.heartbeat is not None:
            await asyncio.to_thread(self.heartbeat.stop)
        for run_id, result in zip(self.active, results, strict=True):
            if isinstance(result, Delivery) and reports.on_delivery is not None:
                reports.on_delivery(result)
            elif (
                isinstance(result, Exception)
                and not isinstance(result, LeaseHeld)
                and reports.on_error
            ):
                reports.on_error(run_id, result)
        try:
            await self.in_db(lambda c: registry.retire(c, self.worker_id))
        except DBAPIError as unreachable:
            self.reports.error(None, unreachable)


class BounceReading:
    """Reads the configured bounce sources on a timer, in a thread, one read at a time."""

    def __init__(
        self, database: Database, clock: Clock, environ: Mapping[str, str], every: float
    ) -> None:
        self.database = database
        self.clock = clock
        self.environ = environ
        self.every = every
        self.configured = bool(settings.bounce_sources(environ))
        self.task: asyncio.Task[ReadSummary | None] | None = None
        self.last: float | None = None

    def tend(
        self,
        on_bounces: Callable[[ReadSummary], None] | None,
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        """Report a read that has ended; start the next when its time has come."""
        if not self.configured:
            return
        if self.task is not None:
            if not self.task.done():
                return
            self._report(self.task, on_bounces, on_error)
            self.task = None
        now = time.monotonic()
        if self.last is not None and now - self.last < self.every:
            return
        self.last = now
        self.task = asyncio.create_task(
            asyncio.to_thread(read_configured_sources, self.database, self.environ, self.clock)
        )

    async def finish(
        self,
        on_bounces: Callable[[ReadSummary], None] | None,
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        """Let a read under way end (a message being stored is not cut off), and report it."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
            self._report(self.task, on_bounces, on_error)
            self.task = None

    @staticmethod
    def _report(
        task: asyncio.Task[ReadSummary | None],
        on_bounces: Callable[[ReadSummary], None] | None,
        on_error: Callable[[BaseException], None] | None,
    ) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            if on_error is not None:
                on_error(error)
            return
        summary = task.result()
        if summary is not None and on_bounces is not None:
            on_bounces(summary)


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    """Return as soon as either event is set."""
    waits = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
