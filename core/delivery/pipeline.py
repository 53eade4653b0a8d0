"""What the parts of one delivery share: its fixed facts, and its state in memory.

A delivery (``deliver.py``) runs one controller, one feeder (``feeder.py``)
and ``max_connections`` senders (``senders.py``) in one event loop. They share
``Delivering`` (who delivers what, with which profile and templates: fixed
once the delivery has begun) and ``InMemory`` (what waits for the senders,
the results not yet recorded, what is in flight: changing all the time).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection

from core.clock import Clock
from core.delivery.guards import Guard
from core.delivery.transitions import Result
from core.messages.compose import Draft, Templates
from core.messages.due import Due
from core.smtp_profiles import ProfileSettings
from core.storage.database import Database

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A recipient on its way to a connection, with what its message is built from."""

    due: Due
    draft: Draft


def timed(timings: dict[str, float], part: str, work: Callable[..., T]) -> Callable[..., T]:
    """``work``, adding the time it runs (not the time it waits for the lane) to ``part``."""

    def run(*args: Any) -> T:
        started = time.perf_counter()
        try:
            return work(*args)
        finally:
            timings[part] += time.perf_counter() - started

    return run


class DatabaseLane:
    """Where one delivery's database calls run, off the event loop.

    On SQLite, one thread: the database has one writer, and calls of one
    delivery made from several threads would only wait on each other's write
    lock (SQLite's busy wait sleeps for milliseconds at a time). On
    PostgreSQL, the shared threads: a call waiting on another worker's locks
    must not hold up the rest.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self.executor: ThreadPoolExecutor | None = None
        if database.engine.dialect.name == "sqlite":
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="msgrun-db")

    async def call(self, work: Callable[[], T]) -> T:
        if self.executor is None:
            return await asyncio.to_thread(work)
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    async def run(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction (``Database.run``)."""
        return await self.call(partial(self.database.run, work))

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)


@dataclass(frozen=True)
class Delivering:
    """The fixed facts of one delivery of a run by this process."""

    database: Database
    clock: Clock
    run_id: int
    worker_id: str
    shard: int  # this process's own counter rows (see RunCount)
    profile: ProfileSettings
    templates: Templates
    guard: Guard  # dedup and quiet hours, checked when recipients are marked `sending`
    lane: DatabaseLane

    async def db(self, work: Callable[[Connection], T]) -> T:
        """A database call, off the event loop: sending never waits on it."""
        return await self.lane.run(work)


class RateMeter:
    """Replies per second over the last second, counted in tenths of a second."""

    BUCKET = 0.1
    SPAN = 10  # buckets

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: deque[list[float]] = deque()  # [start, count]

    def add(self, n: int = 1) -> None:
        now = self.clock()
        start = now - now % self.BUCKET
        if self.buckets and self.buckets[-1][0] == start:
            self.buckets[-1][1] += n
        else:
            self.buckets.append([start, n])
            while len(self.buckets) > self.SPAN + 1:
                self.buckets.popleft()

    def per_second(self) -> float:
        """Replies counted in the last second (the bucket under way included)."""
        since = self.clock() - self.BUCKET * self.SPAN
        return float(sum(n for start, n in self.buckets if start >= since))


class Ready:
    """Messages marked `sending`, waiting for a connection: taken in order; a line that
    stopped before trying some puts them back in front, for another to send."""

    def __init__(self) -> None:
        self.items: deque[Outgoing] = deque()
        self.changed = asyncio.Event()
        self.closed = False  # the senders end

    def __len__(self) -> int:
        return len(self.items)

    def put(self, items: list[Outgoing]) -> None:
        self.items.extend(items)
        self.changed.set()

    def put_back(self, items: list[Outgoing]) -> None:
        self.items.extendleft(reversed(items))
        self.changed.set()

    def take(self, most: int) -> list[Outgoing]:
        items = self.items
        return [items.popleft() for _ in range(min(most, len(items)))]

    def drain(self) -> list[Outgoing]:
        drained = list(self.items)
        self.items.clear()
        return drained

    def close(self) -> None:
        self.closed = True
        self.changed.set()

    async def wait(self, timeout: float) -> bool:
        """Until something is ready or the senders are to end; False after ``timeout``."""
        while not self.items and not self.closed:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout)
            except TimeoutError:
                return False
        return True


class InMemory:
    """The delivery's state in memory, shared by the controller, the feeder and the senders."""

    def __init__(self) -> None:
        # Built messages marked `sending`, waiting for a sender.
        self.ready = Ready()
        # Notified when a sender finishes a message or a connection slot changes hands.
        self.capacity = asyncio.Condition()
        self.wake = asyncio.Event()  # the feeder looks for due work again
        self.has_work = asyncio.Event()  # senders without a connection slot may take one
        self.halted = asyncio.Event()  # the delivery is ending
        self.halt = False
        self.idle = False  # the feeder found nothing due
        self.active = 0  # senders holding a connection slot
        self.fair_share = 1  # connection slots this delivery may hold (policy.fair_share)
        self.contended = False  # other runs want the profile: slots change hands
        self.timings: defaultdict[str, float] = defaultdict(float)
        self.results: list[Result] = []  # not yet recorded
        self.in_flight: set[int] = set()  # marked `sending`, reply not yet in
        self.unsent: list[int] = []  # marked `sending`, never handed to a connection
        # Marked `sending`, held on the wire by quiet hours (id, until when): not yet recorded.
        self.held: list[tuple[int, datetime]] = []
        self.fault: str | None = None  # a fault of the profile ends the run
        self.sent = 0
        self.replies = RateMeter()  # replies a second: the marked group follows it

    def busy(self) -> int:
        return len(self.in_flight)

    async def notify(self) -> None:
        async with self.capacity:
            self.capacity.notify_all()
