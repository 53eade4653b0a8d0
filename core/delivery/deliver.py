"""Delivering one run in this process: its lifecycle, and the controller.

reserve → build → mark `sending` → send → record, under a lease. One
controller, one feeder (``feeder.py``) and ``max_connections`` senders
(``senders.py``), in one event loop, sharing ``pipeline.InMemory``:

- the feeder keeps at most ``max_connections`` marked messages waiting for a
  sender: a recipient is marked ``sending`` only just before it is handed to a
  connection, so a crash leaves few ``unknown``;
- each sender owns one reused SMTP connection and waits on the profile's
  rate limit before every message;
- the controller (here) records results in batches, at least every
  ``FLUSH_SECONDS``; renews the lease every ``LEASE_RENEW_SECONDS``; sees a
  stop request (from any process) within ``STOP_POLL_SECONDS``; and ends the
  run in the state ``policy.settled_state`` gives once nothing is left to do.

The lifecycle: take the run (register, lease or share, recover what a dead
process left), deliver, and leave it (release everything, at once).
Database calls run in a worker thread so that sending never waits on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Connection

from core import settings
from core.clock import Clock
from core.delivery import guards, policy, processes, queries, registry, transitions
from core.delivery.feeder import Feeder
from core.delivery.lines import local_lines
from core.delivery.pipeline import DatabaseLane, Delivering, InMemory, timed
from core.delivery.queries import run_settings
from core.delivery.sender_processes import SenderProcesses
from core.delivery.senders import Senders
from core.delivery.smtp import RunFault, dkim_signer, password_for
from core.messages.compose import Composer, Templates
from core.run_info import read_counts
from core.smtp_profiles import ProfileSettings
from core.states import (
    COMPLETED,
    LEASE_RENEW_SECONDS,
    LEFT_TO_SEND,
    RETRYING,
    RUN_FAILED,
    RUNNING,
    STOPPED,
    STOPPING,
    WAITING,
)
from core.storage.database import Database, error_words

T = TypeVar("T")
FLUSH_SECONDS = 0.25
STOP_POLL_SECONDS = 0.5
# Dead workers are looked for, and contention for the profile's connections
# checked, this often.
REAP_SECONDS = 2.0
# A delivery with only retries left waits for one due this soon rather than
# ending `waiting` (a short retry schedule, a greylisting server's few seconds).
LINGER_SECONDS = 15.0


def process_owner() -> str:
    """Who holds a lease: host, pid and a nonce (pids are reused: ``processes``)."""
    return processes.process_id()


class DeliveryBroken(Exception):
    """Delivering a run ended on an unexpected error (the database went away, say).

    What was sent is recorded and what was marked given back before it is
    raised; the run is left as it was, to be taken up again.
    """

    def __init__(self, run_id: int, cause: BaseException) -> None:
        super().__init__(f"delivery stopped by an error: {error_words(cause)}")
        self.run_id = run_id


class LeaseHeld(Exception):
    """Another live process delivers this run."""

    def __init__(self, owner: str, until: datetime | None) -> None:
        super().__init__(owner, until)
        self.owner = owner
        self.until = until


class Ending(StrEnum):
    """How the controller's watch ended, when the run did not settle."""

    STOP = "stop"  # a stop was asked for (here, or from any process)
    FAULT = "fault"  # a fault of the profile
    LOST = "lost"  # another process took the run over
    BROKEN = "broken"  # a task of this delivery failed (the database went away, say)


@dataclass(frozen=True)
class DeliveryOptions:
    """How this process delivers the run."""

    # Who holds the run's lease (default: this process, with a nonce).
    owner: str | None = None
    environ: Mapping[str, str] | None = None  # default os.environ
    # Set to stop gracefully (Ctrl-C, SIGTERM).
    stop: asyncio.Event | None = None
    on_progress: Callable[[dict[str, int]], None] | None = None
    # A worker shutting down leaves the run `running` for another worker;
    # a person's Ctrl-C or `run stop` makes it `stopped`.
    keep_running_on_stop: bool = False
    # A worker passes its own registry id (and renews it); a foreground
    # delivery registers one for itself.
    worker_id: str | None = None
    # Several workers deliver the run together (PostgreSQL), no run lease;
    # otherwise this process holds the run's lease alone.
    alongside_others: bool = False
    # Set by the worker's heartbeat when it finds the worker reaped.
    worker_lost: threading.Event | None = None
    # A worker resumes runs; it never clears a stop (only a restart does).
    resume_only: bool = False


@dataclass
class Delivery:
    """What one call of ``deliver`` did."""

    run_id: int
    state: str
    error: str | None = None
    sent: int = 0
    # Seconds spent "reading" recipients, "marking" them `sending` and "recording"
    # results (the rest of the time is building, SMTP and the event loop).
    timings: dict[str, float] = field(default_factory=dict)
    sender_processes: int = 0  # child processes that sent (0: this one did)


@dataclass
class Crew:
    """What sends a delivery's messages: the feeder (its task) and the senders, over
    the sender processes when there are some."""

    feeder: Feeder
    feeding: asyncio.Task[None]
    senders: list[asyncio.Task[None]]
    processes: SenderProcesses | None


class Deliverer:
    """One delivery of one run by this process: take it, control it, leave it."""

    def __init__(
        self,
        database: Database,
        run_id: int,
        clock: Clock,
        options: DeliveryOptions | None = None,
    ) -> None:
        options = options or DeliveryOptions()
        self.database = database
        self.run_id = run_id
        self.clock = clock
        self.owner = options.owner or process_owner()
        self.environ = os.environ if options.environ is None else options.environ
        self.local_stop = options.stop or asyncio.Event()
        self.on_progress = options.on_progress
        self.keep_running_on_stop = options.keep_running_on_stop
        self.lease_seconds = settings.lease_seconds(self.environ)
        self.renew_seconds = min(LEASE_RENEW_SECONDS, self.lease_seconds / 4)
        self.own_worker = options.worker_id is None
        self.worker_id = options.worker_id or registry.new_worker_id("run")
        self.alongside_others = options.alongside_others
        self.worker_lost = options.worker_lost or threading.Event()
        self.heartbeat: registry.Heartbeat | None = None
        self.resume_only = options.resume_only
        # This process's own counter rows (see RunCount): 1..64.
        self.shard = 1 + zlib.crc32(self.worker_id.encode()) % 64
        self.memory = InMemory()
        self.lane = DatabaseLane(database)
        # What ended this delivery's controller, when something did (see _broken).
        self.failure: Exception | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.sender_process_count = 0

    async def db(self, work: Callable[[Connection], T]) -> T:
        return await self.lane.run(work)

    # -- taking the run, and leaving it ---------------------------------------------

    def _take(
        self, connection: Connection, resend_unknown: bool
    ) -> tuple[Any, ProfileSettings, Templates]:
        now = self.clock.now()
        run = queries.run_row(connection, self.run_id)
        if self.own_worker:
            registry.register(connection, self.worker_id, self.lease_seconds)
        if not self.alongside_others:
            if not registry.acquire_lease(
                connection, self.run_id, self.owner, now, self.lease_seconds
            ):
                raise LeaseHeld(run.lease_owner, run.lease_expires_at)
            sharing = registry.run_sharers(connection, self.run_id, self.worker_id)
            if sharing:
                raise LeaseHeld(f"{len(sharing)} worker(s): {', '.join(sharing)}", None)
        registry.recover_run(connection, self.run_id, now)
        if not self.own_worker:
            # What this worker left of an earlier delivery of the run that ended
            # on an error (the database went away, say): a worker delivers a run
            # once at a time, so its `sending` recipients of the run are in
            # doubt, and what it reserved goes back to the pool.
            transitions.make_unknown(connection, self.worker_id, now, self.run_id)
            registry.release_reservations(connection, self.worker_id, self.run_id)
        if resend_unknown:
            transitions.resend_unknown(connection, self.run_id, now)
        profile, templates = run_settings(connection, self.run_id)
        registry.join(connection, self.run_id, self.worker_id, profile.id)
        return run, profile, templates

    def _leave(self, connection: Connection) -> None:
        registry.leave(connection, self.run_id, self.worker_id)
        now = self.clock.now()
        if self.alongside_others:
            # The last process out of a stopping run marks it stopped.
            registry.finish_stopping(connection, now, self.run_id)
            registry.left_unfinished(connection, self.run_id, self.worker_id, now)
        else:
            # A run it leaves unfinished (an error, a worker shutting down) shows
            # as interrupted until a process takes it up again.
            registry.release_lease(connection, self.run_id, self.owner, now)
        if self.own_worker:
            registry.retire(connection, self.worker_id)

    async def run(self, *, resend_unknown: bool = False) -> Delivery:
        run, profile, templates = await self.db(lambda c: self._take(c, resend_unknown))
        if self.own_worker:
            self.heartbeat = registry.Heartbeat(
                self.database, self.worker_id, self.lease_seconds, self.renew_seconds
            ).start()
            self.worker_lost = self.heartbeat.lost
        try:
            if policy.settled_state(await self._counts()) == COMPLETED and run.state == COMPLETED:
                return Delivery(self.run_id, COMPLETED)
            if self.resume_only:
                if not await self.db(lambda c: transitions.resume(c, self.run_id)):
                    return Delivery(self.run_id, str(run.state))
            else:
                await self.db(lambda c: transitions.restart(c, self.run_id))
            return await self._deliver(profile, templates)
        finally:
            if self.heartbeat is not None:
                await asyncio.to_thread(self.heartbeat.stop)
            await self.db(self._leave)
            await asyncio.to_thread(self.lane.close)

    async def _counts(self) -> dict[str, int]:
        return (await self.db(lambda c: read_counts(c, [self.run_id])))[self.run_id]

    # -- delivering ---------------------------------------------------------------------

    async def _deliver(self, profile: ProfileSettings, templates: Templates) -> Delivery:
        """Send what is due until the controller ends the delivery; then account for
        every message and settle the run."""
        try:
            password = password_for(profile, self.environ)
            signer = dkim_signer(profile, self.environ)
        except RunFault as fault:
            return await self._end(RUN_FAILED, str(fault))
        composer = Composer(self.run_id, profile, templates, signer)
        delivering = await self._delivering(profile, templates)
        crew = await self._start_crew(delivering, composer, password)
        lost = False
        try:
            outcome = await self._controlled(delivering)
            lost = outcome == Ending.LOST
        finally:
            drained = await self._halt_crew(crew, lost)
        if lost:
            # Another process took the run over: leave everything to it.
            return Delivery(self.run_id, RUNNING, "the lease on the run was lost", self.memory.sent)
        await self._give_back(drained)
        await self._flush(templates)
        if outcome == Ending.BROKEN:
            await self._break_off()
        return await self._settle(outcome)

    async def _delivering(self, profile: ProfileSettings, templates: Templates) -> Delivering:
        """What the feeder and the senders share, and this delivery's share of the
        profile's connections."""
        delivering = Delivering(
            database=self.database,
            clock=self.clock,
            run_id=self.run_id,
            worker_id=self.worker_id,
            shard=self.shard,
            profile=profile,
            templates=templates,
            guard=await self.db(lambda c: guards.guard_of(c, self.run_id)),
            lane=self.lane,
        )
        m = self.memory
        m.contended, m.fair_share = await self.db(lambda c: self._reap(c, profile))
        return delivering

    async def _start_crew(
        self, delivering: Delivering, composer: Composer, password: str | None
    ) -> Crew:
        """The feeder and the senders (over the sender processes' lines, or this
        process's own connections), started."""
        m = self.memory
        processes = await self._sender_processes(composer, password)
        self.sender_process_count = processes.count if processes is not None else 0
        lines = processes.line if processes is not None else local_lines(composer, password)
        senders = Senders(delivering, m, lines).start()
        feeder = Feeder(delivering, m)
        feeding = asyncio.create_task(feeder.run())
        self.tasks = [feeding, *senders]
        return Crew(feeder, feeding, senders, processes)

    async def _controlled(self, delivering: Delivering) -> str:
        """The controller's outcome; BROKEN when it failed (the database went away, say)."""
        try:
            outcome: str = await self._control(delivering)
        except Exception as failure:
            self.failure = failure
            outcome = Ending.BROKEN
        return outcome

    async def _halt_crew(self, crew: Crew, lost: bool) -> list[int]:
        """Stop the feeder and the senders; the ids of the messages marked that no
        connection took."""
        m = self.memory
        # The feeder is told, not cancelled: a marking it has started must
        # land in the queue, so that what it marked is accounted for.
        m.halt = True
        m.halted.set()
        m.wake.set()
        m.has_work.set()
        await m.notify()
        await asyncio.gather(crew.feeding, return_exceptions=True)
        crew.feeder.close()
        # Marked messages no sender took go back; messages in flight finish
        # (unless the lease was lost: then the new holder decides).
        drained = [item.due.id for item in m.ready.drain()]
        m.in_flight.difference_update(drained)
        m.ready.close()
        for task in crew.senders:
            if lost:
                task.cancel()
        if lost and crew.processes is not None:
            crew.processes.kill()  # what they have in flight is the new holder's to decide
        await asyncio.gather(*crew.senders, return_exceptions=True)
        if crew.processes is not None:
            await crew.processes.stop()
        # What a sender took and could not hand over as it ended.
        late = [item.due.id for item in m.ready.drain()]
        m.in_flight.difference_update(late)
        return drained + late

    async def _give_back(self, drained: list[int]) -> None:
        """Messages marked but never handed to a connection go back first: should
        recording the results fail next, they at least are not left in doubt. Then
        what this process reserved and never started sending goes back to the pool."""
        unsent = drained + self.memory.unsent
        if unsent:
            await self.db(
                lambda c: transitions.give_back_unsent(
                    c, self.run_id, unsent, self.clock.now(), self.shard
                )
            )
        await self.db(lambda c: registry.release_reservations(c, self.worker_id, self.run_id))

    async def _break_off(self) -> None:
        """DeliveryBroken, after what was sent is recorded and what was marked given
        back: the run stays as it was for this process (or another) to take up again."""
        error = self._broken()
        assert error is not None
        # A sender that failed may have left its message `sending`: in doubt.
        await self.db(
            lambda c: transitions.make_unknown(c, self.worker_id, self.clock.now(), self.run_id)
        )
        broken = DeliveryBroken(self.run_id, error)
        # Whoever looks at the run (the console, run show) sees why it is interrupted;
        # the database may be what went away, and then this cannot be said.
        with contextlib.suppress(Exception):
            await self.db(lambda c: transitions.note_interruption(c, self.run_id, str(broken)))
        raise broken from error

    async def _settle(self, outcome: str) -> Delivery:
        """The run's state after the controller's outcome."""
        m = self.memory
        if outcome not in (Ending.STOP, Ending.FAULT):
            return await self._end(outcome, None)
        if m.fault is not None:
            return await self._end(RUN_FAILED, m.fault)
        if (
            self.keep_running_on_stop
            and self.local_stop.is_set()
            and not await self._stop_requested()
        ):
            return Delivery(self.run_id, RUNNING, None, m.sent)
        if self.alongside_others:
            # Other workers may still be letting go of the run: the last one out
            # marks it stopped (see _leave), and only while it is still stopping.
            # Marking it here could undo a restart made the moment another
            # worker had marked it stopped.
            return Delivery(self.run_id, STOPPING, None, m.sent)
        return await self._end(STOPPED, None)

    async def _sender_processes(
        self, composer: Composer, password: str | None
    ) -> SenderProcesses | None:
        """The sender processes of this delivery (``policy.sender_processes``), started;
        None when its connections are this process's own."""
        try:
            setting = settings.sender_processes(self.environ)
        except settings.SettingError:  # the command line refuses it before anything is done
            setting = None
        profile, counts = composer.profile, await self._counts()
        count = policy.sender_processes(
            setting,
            cores=os.cpu_count() or 1,
            max_connections=profile.max_connections,
            rate_per_second=profile.rate_per_second,
            left_to_send=sum(counts[state] for state in LEFT_TO_SEND),
            deliveries_here=await self.db(registry.deliveries_here),
        )
        if not count:
            return None
        processes = SenderProcesses(composer, password, count)
        try:
            await processes.start()
        except OSError:  # no process to be had (a limit of the machine): send from here
            await processes.stop()
            return None
        return processes

    # -- the controller -------------------------------------------------------------

    async def _control(self, delivering: Delivering) -> str:
        """Record results, watch for stop and faults, keep the lease; say how it ended.

        Returns an ``Ending``, or the state the run settled in.
        """
        m = self.memory
        last_renew = last_poll = last_reap = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.local_stop.wait(), FLUSH_SECONDS)
            now_m = time.monotonic()
            await self._flush(delivering.templates)
            if self._broken() is not None:
                return Ending.BROKEN
            if m.fault is not None:
                return Ending.FAULT
            if self.local_stop.is_set():
                return Ending.STOP
            if now_m - last_poll >= STOP_POLL_SECONDS:
                last_poll = now_m
                if await self._stop_requested():
                    return Ending.STOP
            if self.worker_lost.is_set():
                return Ending.LOST
            if now_m - last_renew >= self.renew_seconds:
                last_renew = now_m
                if not await self.db(self._renew):
                    return Ending.LOST
            if now_m - last_reap >= REAP_SECONDS:
                last_reap = now_m
                m.contended, m.fair_share = await self.db(
                    lambda c: self._reap(c, delivering.profile)
                )
            if m.idle and not m.in_flight and not m.ready:
                settled: str | None = policy.settled_state(await self._counts())
                if settled == WAITING and await self._retry_soon():
                    settled = None
                if settled is not None:
                    return settled
            m.wake.set()  # results may have made retries due: let the feeder look

    async def _retry_soon(self) -> bool:
        """A retry is due within LINGER_SECONDS: wait for it rather than end `waiting`."""
        due = await self.db(lambda c: queries.next_due(c, self.run_id, RETRYING))
        return due is not None and (due - self.clock.now()).total_seconds() <= LINGER_SECONDS

    def _broken(self) -> BaseException | None:
        """The error the controller, the feeder or a sender ended with, if one did.

        Without its feeder the delivery would wait for ever for work it
        marked and never hands out (and nobody else may take).
        """
        if self.failure is not None:
            return self.failure
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    def _renew(self, connection: Connection) -> bool:
        """Renew the run's lease when this process holds it alone (the worker's has its thread)."""
        return self.alongside_others or registry.renew_lease(
            connection, self.run_id, self.owner, self.clock.now(), self.lease_seconds
        )

    def _reap(self, connection: Connection, profile: ProfileSettings) -> tuple[bool, int]:
        """Recover what dead workers left; see who else delivers through this profile.

        Returns whether other runs want the profile (slots then change hands
        every few seconds) and this delivery's fair share of its connections.
        """
        registry.reap(connection)
        contended = registry.runs_sharing(connection, profile.id) > 1
        pairs = registry.sharers(connection, profile.id)
        return contended, policy.fair_share(profile.max_connections, pairs)

    async def _stop_requested(self) -> bool:
        row = await self.db(lambda c: queries.run_row(c, self.run_id))
        return row.stop_requested_at is not None or row.state == STOPPING

    async def _end(self, state: str, error: str | None) -> Delivery:
        now = self.clock.now()
        await self.db(lambda c: transitions.settle(c, self.run_id, state, now, error))
        if self.on_progress is not None:
            self.on_progress(await self._counts())
        m = self.memory
        return Delivery(
            self.run_id, state, error, m.sent, dict(m.timings), self.sender_process_count
        )

    async def _flush(self, templates: Templates) -> None:
        m = self.memory
        results, m.results = m.results, []
        held, m.held = m.held, []
        if not results and not held:
            return

        def record(c: Connection) -> None:
            now = self.clock.now()
            transitions.record_results(
                c,
                self.run_id,
                templates.definition_id,
                results,
                now,
                ledger=templates.ledger,
                shard=self.shard,
            )
            if held:
                transitions.hold_at_the_wire(c, self.run_id, held, now, self.shard)

        try:
            await self.db(timed(m.timings, "recording", record))
        except Exception:
            # Kept for the next flush: what was sent is not forgotten.
            m.results[:0] = results
            m.held[:0] = held
            raise
        if self.on_progress is not None:
            self.on_progress(await self._counts())


async def deliver(
    database: Database,
    run_id: int,
    clock: Clock,
    *,
    resend_unknown: bool = False,
    owner: str | None = None,
    environ: Mapping[str, str] | None = None,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    keep_running_on_stop: bool = False,
    worker_id: str | None = None,
    alongside_others: bool = False,
    worker_lost: threading.Event | None = None,
    resume_only: bool = False,
) -> Delivery:
    """Deliver what ``run_id`` has not sent, in this process, until it ends or stops.

    The options are those of ``DeliveryOptions``.
    """
    options = DeliveryOptions(
        owner=owner,
        environ=environ,
        stop=stop,
        on_progress=on_progress,
        keep_running_on_stop=keep_running_on_stop,
        worker_id=worker_id,
        alongside_others=alongside_others,
        worker_lost=worker_lost,
        resume_only=resume_only,
    )
    return await Deliverer(database, run_id, clock, options).run(resend_unknown=resend_unknown)
