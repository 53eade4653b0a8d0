"""Delivering one run: claim → build → send → record, under a lease.

One controller and ``max_connections`` senders, in one event loop:

- the controller keeps at most ``max_connections`` claimed messages waiting
  for a sender: a recipient is marked ``sending`` only just before it is handed
  to a connection, so a crash leaves few ``unknown``;
- each sender owns one reused SMTP connection and waits on the profile's
  rate limit before every message;
- results are written in batches, at least every ``FLUSH_SECONDS``;
- the lease is renewed every ``LEASE_RENEW_SECONDS``; a stop request (from any
  process) is seen within ``STOP_POLL_SECONDS``.

Database calls run in a worker thread so that sending never waits on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
import uuid
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import aiosmtplib
from sqlalchemy import Connection

from core.clock import Clock
from core.delivery import guards, policy, queries, registry, transitions
from core.delivery.compose import Templates, compose_message, message_contexts, run_settings
from core.delivery.runs import read_counts
from core.delivery.smtp import (
    AuthGate,
    ConnectionFault,
    ProfileSettings,
    RateLimit,
    Reply,
    RunFault,
    open_connection,
    password_for,
    send,
)
from core.delivery.states import (
    COMPLETED,
    FAILED,
    LEASE_RENEW_SECONDS,
    RETRYING,
    RUN_FAILED,
    RUNNING,
    SENT,
    STOPPED,
    STOPPING,
    WAITING,
    lease_seconds,
)
from core.storage.database import Database, error_words, retry_transient
from core.templating import RenderError

T = TypeVar("T")
FLUSH_SECONDS = 0.25
STOP_POLL_SECONDS = 0.5
PREFETCH = 256
# Dead workers are looked for, and contention for the profile's connections
# checked, this often.
REAP_SECONDS = 2.0
# A sender gives its connection slot back after this long without a message,
# and, while other runs want the profile, after holding it this long.
SLOT_IDLE_SECONDS = 1.0
SLOT_TURN_SECONDS = 5.0
SLOT_RETRY_SECONDS = 0.25
SLOT_WAIT_MOST_SECONDS = 2.0
# A delivery with only retries left waits for one due this soon rather than
# ending `waiting` (a short retry schedule, a greylisting server's few seconds).
LINGER_SECONDS = 15.0


def process_owner() -> str:
    """Who holds a lease: host, pid and a nonce (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DeliveryBroken(Exception):
    """Delivering a run ended on an unexpected error (the database went away, say).

    What was sent is recorded and what was claimed given back before it is
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


@dataclass
class Outgoing:
    due: queries.Due
    envelope: Any = None  # Envelope, once built


@dataclass
class Delivery:
    """What one call of ``deliver`` did."""

    run_id: int
    state: str
    error: str | None = None
    sent: int = 0
    # Seconds spent reading recipients, building messages, claiming and
    # recording results (the rest of the time is SMTP and the event loop).
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Shared:
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    results: list[transitions.Result] = field(default_factory=list)
    in_flight: set[int] = field(default_factory=set)
    unsent: list[int] = field(default_factory=list)
    fault: str | None = None
    sent: int = 0


class Deliverer:
    def __init__(
        self,
        database: Database,
        run_id: int,
        clock: Clock,
        *,
        owner: str | None = None,
        environ: Mapping[str, str] | None = None,
        stop: asyncio.Event | None = None,
        on_progress: Callable[[dict[str, int]], None] | None = None,
        keep_running_on_stop: bool = False,
        worker_id: str | None = None,
        shared: bool = False,
        worker_lost: threading.Event | None = None,
        resume_only: bool = False,
    ) -> None:
        self.database = database
        self.run_id = run_id
        self.clock = clock
        self.owner = owner or process_owner()
        self.environ = os.environ if environ is None else environ
        self.local_stop = stop or asyncio.Event()
        self.on_progress = on_progress
        # A worker shutting down leaves the run `running` for another worker;
        # a person's Ctrl-C or `run stop` makes it `stopped`.
        self.keep_running_on_stop = keep_running_on_stop
        self.lease_seconds = lease_seconds(self.environ)
        self.renew_seconds = min(LEASE_RENEW_SECONDS, self.lease_seconds / 4)
        self.shared = _Shared()
        self._claims: Connection | None = None
        # The delivering process in the worker registry: a worker passes its own
        # id (and renews it); a foreground delivery registers one for itself.
        self.own_worker = worker_id is None
        self.worker_id = worker_id or registry.new_worker_id("run")
        # Shared: several workers deliver the run together (PostgreSQL), no run
        # lease; otherwise this process holds the run's lease alone.
        self.is_shared = shared
        self.worker_lost = worker_lost or threading.Event()
        self.heartbeat: registry.Heartbeat | None = None
        # A worker resumes runs; it never clears a stop (only a restart does).
        self.resume_only = resume_only
        self.active = 0  # senders holding a connection slot
        # This process's own counter rows (see RunCount): 1..64.
        self.shard = 1 + zlib.crc32(self.worker_id.encode()) % 64
        self.contended = False
        # Dedup and quiet hours, checked when recipients are marked `sending`.
        self.guard: guards.Guard | None = None
        # What ended this delivery's controller, when something did (see _broken).
        self.failure: Exception | None = None
        self.tasks: list[asyncio.Task[None]] = []

    # -- database calls, in a thread ----------------------------------------

    async def db(self, work: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(self.database.run, work)

    # -- setting up ---------------------------------------------------------------

    def _take(
        self, connection: Connection, resend_unknown: bool
    ) -> tuple[Any, ProfileSettings, Templates]:
        now = self.clock.now()
        run = queries.run_row(connection, self.run_id)
        if self.own_worker:
            registry.register(connection, self.worker_id, self.lease_seconds)
        if not self.is_shared:
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
            # doubt, and what it claimed goes back to the pool.
            transitions.make_unknown(connection, self.worker_id, now, self.run_id)
            registry.release_reservations(connection, self.worker_id, self.run_id)
        if resend_unknown:
            transitions.resend_unknown(connection, self.run_id, now)
        profile, templates = run_settings(connection, self.run_id)
        registry.join(connection, self.run_id, self.worker_id, profile.id)
        return run, profile, templates

    def _leave(self, connection: Connection) -> None:
        registry.leave(connection, self.run_id, self.worker_id)
        if self.is_shared:
            # The last process out of a stopping run marks it stopped.
            registry.finish_stopping(connection, self.clock.now(), self.run_id)
        else:
            registry.release_lease(connection, self.run_id, self.owner)
        if self.own_worker:
            registry.retire(connection, self.worker_id)

    # -- the controller -------------------------------------------------------------

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

    async def _counts(self) -> dict[str, int]:
        return (await self.db(lambda c: read_counts(c, [self.run_id])))[self.run_id]

    async def _deliver(self, profile: ProfileSettings, templates: Templates) -> Delivery:
        try:
            password = password_for(profile, self.environ)
        except RunFault as fault:
            return await self._end(RUN_FAILED, str(fault))
        self.queue: asyncio.Queue[Outgoing | None] = asyncio.Queue()
        self.capacity = asyncio.Condition()
        self.wake = asyncio.Event()
        self.halt = False
        self.idle = False
        self.profile_id = profile.id
        self.max_connections = profile.max_connections
        self.ledger = templates.ledger
        self.guard = await self.db(lambda c: guards.guard_of(c, self.run_id))
        self.profile = profile
        # One login at a time until one succeeds; a refused password is not tried again.
        self.auth_gate = AuthGate()
        self.contended, self.fair_share = await self.db(self._reap)
        self.has_work = asyncio.Event()
        self.halted = asyncio.Event()
        limit = RateLimit(profile.rate_per_second)
        limit.share(0.0)
        senders = [
            asyncio.create_task(self._sender(profile, password, limit))
            for _ in range(profile.max_connections)
        ]
        feeder = asyncio.create_task(self._feeder(profile, templates))
        self.tasks = [feeder, *senders]
        self.failure = None
        lost = False
        try:
            try:
                outcome = await self._control(templates)
            except Exception as failure:  # the database went away, say
                self.failure = failure
                outcome = "broken"
            lost = outcome == "lost"
        finally:
            # The feeder is told, not cancelled: a claim it has started must
            # land in the queue, so that what it claimed is accounted for.
            self.halt = True
            self.halted.set()
            self.wake.set()
            self.has_work.set()
            async with self.capacity:
                self.capacity.notify_all()
            await asyncio.gather(feeder, return_exceptions=True)
            if self._claims is not None:
                self._claims.close()
                self._claims = None
            # Claimed messages no sender took go back; messages in flight finish
            # (unless the lease was lost: then the new holder decides).
            drained = []
            while not self.queue.empty():
                item = self.queue.get_nowait()
                if item is not None:
                    drained.append(item.due.id)
                    self.shared.in_flight.discard(item.due.id)
            for task in senders:
                self.queue.put_nowait(None)
                if lost:
                    task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
        if lost:
            # Another process took the run over: leave everything to it.
            return Delivery(self.run_id, RUNNING, "the lease on the run was lost", self.shared.sent)
        # Messages claimed but never handed to a connection go back first: should
        # recording the results fail next, they at least are not left in doubt.
        unsent = drained + self.shared.unsent
        if unsent:
            await self.db(
                lambda c: transitions.give_back_unsent(
                    c, self.run_id, unsent, self.clock.now(), self.shard
                )
            )
        # What this process claimed and never started sending goes back to the pool.
        await self.db(lambda c: registry.release_reservations(c, self.worker_id, self.run_id))
        await self._flush(templates.definition_id)
        if outcome == "broken":
            # What was sent is recorded and what was claimed given back: the run
            # stays as it was for this process (or another) to take up again.
            error = self._broken()
            assert error is not None
            # A sender that failed may have left its message `sending`: in doubt.
            await self.db(
                lambda c: transitions.make_unknown(c, self.worker_id, self.clock.now(), self.run_id)
            )
            raise DeliveryBroken(self.run_id, error) from error
        if outcome not in ("stop", "fault"):
            return await self._end(outcome, None)
        if self.shared.fault is not None:
            return await self._end(RUN_FAILED, self.shared.fault)
        if (
            self.keep_running_on_stop
            and self.local_stop.is_set()
            and not await self._stop_requested()
        ):
            return Delivery(self.run_id, RUNNING, None, self.shared.sent)
        if self.is_shared:
            # Other workers may still be letting go of the run: the last one out
            # marks it stopped (see _leave), and only while it is still stopping.
            # Marking it here could undo a restart made the moment another
            # worker had marked it stopped.
            return Delivery(self.run_id, STOPPING, None, self.shared.sent)
        return await self._end(STOPPED, None)

    async def _control(self, templates: Templates) -> str:
        """Record results, watch for stop and faults, keep the lease; say how it ended.

        Returns "stop", "fault", "lost", "broken" (a task of this delivery
        failed: see ``_broken``), or the state the run settled in.
        """
        last_renew = last_poll = last_reap = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.local_stop.wait(), FLUSH_SECONDS)
            now_m = time.monotonic()
            await self._flush(templates.definition_id)
            if self._broken() is not None:
                return "broken"
            if self.shared.fault is not None:
                return "fault"
            if self.local_stop.is_set():
                return "stop"
            if now_m - last_poll >= STOP_POLL_SECONDS:
                last_poll = now_m
                if await self._stop_requested():
                    return "stop"
            if self.worker_lost.is_set():
                return "lost"
            if now_m - last_renew >= self.renew_seconds:
                last_renew = now_m
                if not await self.db(self._renew):
                    return "lost"
            if now_m - last_reap >= REAP_SECONDS:
                last_reap = now_m
                self.contended, self.fair_share = await self.db(self._reap)
            if self.idle and not self.shared.in_flight and self.queue.empty():
                settled = policy.settled_state(await self._counts())
                if settled == WAITING and await self._retry_soon():
                    settled = None
                if settled is not None:
                    return settled
            self.wake.set()  # results may have made retries due: let the feeder look

    async def _retry_soon(self) -> bool:
        """A retry is due within LINGER_SECONDS: wait for it rather than end `waiting`."""
        due = await self.db(lambda c: queries.next_due(c, self.run_id, RETRYING))
        return due is not None and (due - self.clock.now()).total_seconds() <= LINGER_SECONDS

    def _broken(self) -> BaseException | None:
        """The error the controller, the feeder or a sender ended with, if one did.

        Without its feeder the delivery would wait for ever for work it
        claimed and never hands out (and nobody else may take).
        """
        if self.failure is not None:
            return self.failure
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    def _renew(self, connection: Connection) -> bool:
        """Renew the run's lease when this process holds it alone (the worker's has its thread)."""
        return self.is_shared or registry.renew_lease(
            connection, self.run_id, self.owner, self.clock.now(), self.lease_seconds
        )

    def _reap(self, connection: Connection) -> tuple[bool, int]:
        """Recover what dead workers left; see who else delivers through this profile.

        Returns whether other runs want the profile (slots then change hands
        every few seconds) and this delivery's fair share of its connections:
        max_connections over the (worker, run) pairs delivering through it.
        """
        registry.reap(connection)
        contended = registry.runs_sharing(connection, self.profile_id) > 1
        pairs = registry.sharers(connection, self.profile_id)
        return contended, policy.fair_share(self.max_connections, pairs)

    async def _stop_requested(self) -> bool:
        row = await self.db(lambda c: queries.run_row(c, self.run_id))
        return row.stop_requested_at is not None or row.state == STOPPING

    async def _end(self, state: str, error: str | None) -> Delivery:
        now = self.clock.now()
        await self.db(lambda c: transitions.settle(c, self.run_id, state, now, error))
        if self.on_progress is not None:
            self.on_progress(await self._counts())
        return Delivery(self.run_id, state, error, self.shared.sent, dict(self.shared.timings))

    async def _flush(self, definition_id: str) -> None:
        results, self.shared.results = self.shared.results, []
        if not results:
            return
        started = time.perf_counter()
        ledger = self.ledger
        try:
            await self.db(
                lambda c: transitions.record_results(
                    c,
                    self.run_id,
                    definition_id,
                    results,
                    self.clock.now(),
                    ledger=ledger,
                    shard=self.shard,
                )
            )
        except Exception:
            # Kept for the next flush: what was sent is not forgotten.
            self.shared.results[:0] = results
            raise
        self.shared.timings["recording"] += time.perf_counter() - started
        if self.on_progress is not None:
            self.on_progress(await self._counts())

    # -- feeding the senders --------------------------------------------------------

    def _busy(self) -> int:
        return len(self.shared.in_flight)

    async def _feeder(self, profile: ProfileSettings, templates: Templates) -> None:
        """Keep the senders busy, never holding more than 2 × max_connections in doubt.

        Messages are read and built ahead, a batch at a time, without claiming
        them; they are claimed (marked `sending`) in small groups only as
        connections free up.
        """
        prepared: deque[Outgoing] = deque()
        most, low = 2 * profile.max_connections, profile.max_connections
        while not self.halt:
            if not prepared:
                # Claim a batch in proportion to the connections this process holds,
                # so that a process without connections does not sit on recipients.
                size = min(PREFETCH, max(2 * profile.max_connections, 32 * self.active))
                ready = await self.db(
                    partial(self._prepare, profile=profile, templates=templates, size=size)
                )
                prepared.extend(ready)
                if not prepared:
                    # Senders without a connection slot wait for work: while messages
                    # marked `sending` still wait in the queue, there is some (else a
                    # sender that gave its slot back would leave them there for ever).
                    if self.queue.empty():
                        self.has_work.clear()
                    self.idle = True
                    await self._sleep_until_due()
                    self.idle = False
                    continue
                self.has_work.set()
            # Mark `sending` in groups of about max_connections, while the group
            # before is still being sent: at most 2 × max_connections in doubt in
            # this process (domain.md), however many of the profile's connections
            # it holds. Each group is one transaction (one commit to wait for), so
            # a process holding few connections still claims in large groups.
            async with self.capacity:
                await self.capacity.wait_for(
                    lambda: self.halt or (self.active > 0 and self._busy() <= low)
                )
            if self.halt:
                return
            room = most - self._busy()
            batch = [prepared.popleft() for _ in range(min(len(prepared), room))]
            # A claim is a short write; alone on the run, making it here costs less
            # than a thread hop. Shared with other workers, it may wait on their
            # locks, and the event loop must not wait with it.
            started = time.perf_counter()
            due = [o.due for o in batch]
            if self.is_shared:
                claimed = await asyncio.to_thread(self._claim_now, due)
            else:
                claimed = self._claim_now(due)
            self.shared.timings["claiming"] += time.perf_counter() - started
            for outgoing in batch:
                if outgoing.due.id in claimed:
                    self.shared.in_flight.add(outgoing.due.id)
                    self.queue.put_nowait(outgoing)

    def _claim_now(self, due: list[queries.Due]) -> set[int]:
        """Claim on the feeder's own connection, one short transaction each time.

        A claim is the hot path of delivery and a short write, so it is made
        on the event loop (cheaper than a hop to a thread) over a connection
        kept open for the purpose (cheaper than a pool checkout each time).
        """

        def once() -> set[int]:
            if self._claims is None:
                self._claims = self.database.engine.connect()
            try:
                with self._claims.begin():
                    return transitions.mark_sending(
                        self._claims,
                        self.run_id,
                        due,
                        self.clock.now(),
                        self.worker_id,
                        self.shard,
                        self.guard,
                    )
            except Exception:
                self._claims.close()
                self._claims = None
                raise

        return retry_transient(once)

    async def _sleep_until_due(self) -> None:
        self.wake.clear()
        due = await self.db(lambda c: queries.next_due(c, self.run_id))
        pause = STOP_POLL_SECONDS
        if due is not None:
            pause = max(0.01, min(pause, (due - self.clock.now()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), pause)

    def _prepare(
        self, connection: Connection, profile: ProfileSettings, templates: Templates, size: int
    ) -> list[Outgoing]:
        """Claim due recipients and build their messages; fail those whose template fails."""
        now = self.clock.now()
        started = time.perf_counter()
        due = queries.reserve_due(connection, self.run_id, self.worker_id, now, size)
        if not due:
            return []
        context = message_contexts(connection, due)
        built = time.perf_counter()
        self.shared.timings["reading"] += built - started
        ready: list[Outgoing] = []
        broken: list[transitions.Result] = []
        for item in due:
            try:
                ready.append(
                    Outgoing(
                        item, compose_message(self.run_id, item, profile, templates, context, now)
                    )
                )
            except (RenderError, ValueError) as error:
                broken.append(
                    transitions.Result(
                        item.id, FAILED, error=str(error), customer_id=item.customer_id
                    )
                )
        self.shared.timings["building"] += time.perf_counter() - built
        if broken:
            claimed = transitions.mark_sending(
                connection,
                self.run_id,
                [d for d in due if d.id in {b.id for b in broken}],
                now,
                self.worker_id,
                self.shard,
                self.guard,
            )
            transitions.record_results(
                connection,
                self.run_id,
                templates.definition_id,
                [b for b in broken if b.id in claimed],
                now,
                shard=self.shard,
            )
        return ready

    # -- the senders ----------------------------------------------------------------

    async def _sender(
        self, profile: ProfileSettings, password: str | None, limit: RateLimit
    ) -> None:
        """Send over one connection, holding one of the profile's connection slots.

        The slot (a row shared by every process) is taken when there is work
        and given back when the sender has been idle a moment, or, while other
        runs want the profile, after a turn of ``SLOT_TURN_SECONDS``.
        """
        smtp: aiosmtplib.SMTP | None = None
        slot: int | None = None
        held_since = 0.0
        retry = SLOT_RETRY_SECONDS

        async def give_back() -> None:
            nonlocal smtp, slot
            if smtp is not None and smtp.is_connected:
                try:
                    await asyncio.wait_for(smtp.quit(), timeout=2)
                except Exception:
                    smtp.close()
            smtp = None
            if slot is not None:
                held, slot = slot, None
                await self.db(lambda c: registry.give_slot(c, profile.id, held, self.worker_id))
                await self._slots_changed(-1, limit, profile)

        try:
            while True:
                if slot is None:
                    await self.has_work.wait()
                    if self.halt:
                        return
                    if self.active >= self.fair_share:
                        # This delivery holds its share of the profile's connections.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.halted.wait(), SLOT_WAIT_MOST_SECONDS)
                        continue
                    slot = await self.db(
                        lambda c: registry.take_slot(
                            c, profile.id, profile.max_connections, self.worker_id, self.run_id
                        )
                    )
                    if slot is None:
                        # Every slot is held (by other workers): look again, less often
                        # the longer it lasts, so waiting senders cost the database little.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                self.halted.wait(), retry * random.uniform(0.5, 1.5)
                            )
                        retry = min(SLOT_WAIT_MOST_SECONDS, retry * 2)
                        continue
                    retry = SLOT_RETRY_SECONDS
                    held_since = time.monotonic()
                    await self._slots_changed(+1, limit, profile)
                try:
                    outgoing = await asyncio.wait_for(self.queue.get(), SLOT_IDLE_SECONDS)
                except TimeoutError:
                    await give_back()
                    continue
                if outgoing is None:
                    return
                if self.shared.fault is not None:
                    self.shared.unsent.append(outgoing.due.id)
                    self.shared.in_flight.discard(outgoing.due.id)
                    continue
                await limit.wait()
                try:
                    if smtp is None or not smtp.is_connected:
                        smtp = await open_connection(profile, password, self.auth_gate)
                    reply = await send(smtp, outgoing.envelope)
                    self._result(outgoing, reply=reply)
                except RunFault as fault:
                    self.shared.fault = str(fault)
                    self.shared.unsent.append(outgoing.due.id)
                    self.shared.in_flight.discard(outgoing.due.id)
                    smtp = None
                except ConnectionFault as fault:
                    smtp = None
                    self._result(outgoing, fault=str(fault))
                async with self.capacity:
                    self.capacity.notify_all()
                if self.active > self.fair_share or (
                    self.contended and time.monotonic() - held_since > SLOT_TURN_SECONDS
                ):
                    await give_back()  # more than its share, or another run's turn
                    await asyncio.sleep(SLOT_RETRY_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await give_back()

    async def _slots_changed(self, delta: int, limit: RateLimit, profile: ProfileSettings) -> None:
        """Connections held changed: this process's part of the profile's rate follows them."""
        self.active += delta
        limit.share(self.active / profile.max_connections)
        async with self.capacity:
            self.capacity.notify_all()

    def _result(
        self, outgoing: Outgoing, *, reply: Reply | None = None, fault: str | None = None
    ) -> None:
        due = outgoing.due
        attempts = due.attempts + 1
        now = self.clock.now()
        result = transitions.Result(
            due.id,
            FAILED,
            customer_id=due.customer_id,
            address=due.address,
            document_id=due.document_id,
            offset_days=due.offset_days,
        )
        if reply is not None:
            result.smtp_code, result.smtp_reply = reply.code, reply.text
        result.first_attempt_at = due.first_attempt_at or now
        outcome = policy.reply_outcome(
            code=reply.code if reply is not None else None,
            text=reply.text if reply is not None else "",
            fault=fault,
            attempts=attempts,
            first_attempt_at=result.first_attempt_at,
            now=now,
            schedule=self.profile.retry_after_seconds,
            retry_for_seconds=self.profile.retry_for_seconds,
        )
        result.state = outcome.state
        result.next_attempt_at = outcome.next_attempt_at
        result.error = outcome.error
        result.hard_bounce = outcome.hard_bounce
        if outcome.state == SENT:
            result.sent_at = now
            self.shared.sent += 1
        self.shared.results.append(result)
        self.shared.in_flight.discard(due.id)


async def deliver(
    database: Database,
    run_id: int,
    clock: Clock,
    *,
    resend_unknown: bool = False,
    **options: Any,
) -> Delivery:
    """Deliver what ``run_id`` has not sent, in this process, until it ends or stops."""
    return await Deliverer(database, run_id, clock, **options).run(resend_unknown=resend_unknown)
