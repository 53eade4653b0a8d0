"""The feeder: keeps the senders busy, never holding more than ``policy.most_in_doubt``.

Due recipients are reserved, and what their messages are built from read,
ahead, a batch at a time (``queries.reserve_due``, ``compose.draft_of``),
without marking them (the lines build the messages as they send them); they are marked
`sending` (``transitions.mark_sending``, with the checks of ``guards.py``) a
group at a time (``policy.mark_group``: a tenth of a second at the current
rate) only as connections free up, and made ready for the senders.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from functools import partial

from sqlalchemy import Connection

from core.delivery import policy, queries, transitions
from core.delivery.pipeline import Delivering, InMemory, Outgoing, timed
from core.messages.compose import draft_of, message_contexts
from core.messages.due import Due
from core.storage.database import retry_transient

# Recipients reserved (with what their messages are built from) at once, at most.
PREFETCH_MOST = 2000
# With nothing due, the feeder looks again this often (sooner when woken).
LOOK_AGAIN_SECONDS = 0.5


class Feeder:
    def __init__(self, delivering: Delivering, memory: InMemory) -> None:
        self.delivering = delivering
        self.memory = memory
        # Marking is the hot path: one connection kept open for it (see _mark_now).
        self._marking: Connection | None = None
        self._next: asyncio.Task[list[Outgoing]] | None = None  # the next batch, being read

    async def run(self) -> None:
        """Feed until the delivery halts (told, never cancelled: what it marked lands
        among the ready, so that it is accounted for)."""
        try:
            await self._feed()
        finally:
            if self._next is not None:  # a reservation under way ends before the delivery
                with contextlib.suppress(Exception):
                    await self._next

    def _reserve_next(self) -> asyncio.Task[list[Outgoing]]:
        """Reserve the next batch, in proportion to the connections this process holds
        and to its rate (so that a process without connections does not sit on
        recipients), while the feeder goes on marking the one before."""
        if self._next is None:
            d, m = self.delivering, self.memory
            connections = d.profile.max_connections
            group = policy.mark_group(m.replies.per_second(), connections)
            size = min(PREFETCH_MOST, max(2 * connections, 32 * m.active, 2 * group))
            self._next = asyncio.create_task(d.db(partial(self._prepare, size=size)))
        return self._next

    async def _feed(self) -> None:
        d, m = self.delivering, self.memory
        prepared: deque[Outgoing] = deque()
        connections = d.profile.max_connections
        while not m.halt:
            if not prepared:
                batch = await self._reserve_next()
                self._next = None
                prepared.extend(batch)
                if not prepared:
                    # Senders without a connection slot wait for work: while messages
                    # marked `sending` still wait in the queue, there is some (else a
                    # sender that gave its slot back would leave them there for ever).
                    if not m.ready:
                        m.has_work.clear()
                    m.idle = True
                    await self._sleep_until_due()
                    m.idle = False
                    continue
                m.has_work.set()
            if len(prepared) < policy.mark_group(m.replies.per_second(), connections):
                self._reserve_next()  # less than a group left: the next is read meanwhile
            # Mark `sending` a group at a time — about a tenth of a second at the
            # current rate, at least max_connections — while the group before is
            # still being sent, never holding more in doubt than
            # policy.most_in_doubt (domain.md). Each group is one transaction, so
            # marking costs a few transactions a second, not one per connection.
            async with m.capacity:
                await m.capacity.wait_for(
                    lambda: (
                        m.halt
                        or (
                            m.active > 0
                            and policy.to_mark(m.busy(), m.replies.per_second(), connections) > 0
                        )
                    )
                )
            if m.halt:
                return
            room = policy.to_mark(m.busy(), m.replies.per_second(), connections)
            batch = [prepared.popleft() for _ in range(min(len(prepared), room))]
            # Marking is a short write, made on the delivery's database lane (it may
            # wait on other workers' locks, and the event loop must not wait with it).
            due = [o.due for o in batch]
            marked = await d.lane.call(partial(timed(m.timings, "marking", self._mark_now), due))
            ready = [o for o in batch if o.due.id in marked]
            m.in_flight.update(o.due.id for o in ready)
            m.ready.put(ready)

    def close(self) -> None:
        if self._marking is not None:
            self._marking.close()
            self._marking = None

    def _mark_now(self, due: list[Due]) -> set[int]:
        """Mark `sending` on the feeder's own connection (kept open for the purpose:
        cheaper than a pool checkout each time), one short transaction each time."""
        d = self.delivering

        def once() -> set[int]:
            if self._marking is None:
                self._marking = d.database.engine.connect()
            try:
                with self._marking.begin():
                    return transitions.mark_sending(
                        self._marking,
                        d.run_id,
                        due,
                        d.clock.now(),
                        d.worker_id,
                        d.shard,
                        d.guard,
                    )
            except Exception:
                self.close()
                raise

        return retry_transient(once)

    async def _sleep_until_due(self) -> None:
        d, m = self.delivering, self.memory
        m.wake.clear()
        due = await d.db(lambda c: queries.next_due(c, d.run_id))
        pause = LOOK_AGAIN_SECONDS
        if due is not None:
            pause = max(0.01, min(pause, (due - d.clock.now()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(m.wake.wait(), pause)

    def _prepare(self, connection: Connection, size: int) -> list[Outgoing]:
        """Reserve due recipients and read what their messages are built from."""
        d, m = self.delivering, self.memory
        now = d.clock.now()
        started = time.perf_counter()
        due = queries.reserve_due(connection, d.run_id, d.worker_id, now, size)
        if not due:
            return []
        context = message_contexts(connection, due)
        ready = [Outgoing(item, draft_of(item, d.templates, context)) for item in due]
        m.timings["reading"] += time.perf_counter() - started
        return ready
