"""The senders: each sends over one reused SMTP connection, holding one of the
profile's connection slots, waiting on the profile's rate before every message.

A slot (a row shared by every process: ``registry.take_slot``) is taken when
there is work and given back when the sender has been idle a moment, or,
while other runs want the profile, after a turn of ``SLOT_TURN_SECONDS``; a
delivery holds at most its fair share of them (``policy.fair_share``). What a
reply makes of the recipient is ``policy.reply_outcome``; results wait in
memory for the controller to record them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import aiosmtplib

from core.delivery import policy, registry, transitions
from core.delivery.pipeline import Delivering, InMemory, Outgoing
from core.delivery.smtp import (
    AuthGate,
    ConnectionFault,
    RateLimit,
    Reply,
    RunFault,
    open_connection,
    send,
)
from core.delivery.states import SENT

# A sender gives its connection slot back after this long without a message,
# and, while other runs want the profile, after holding it this long.
SLOT_IDLE_SECONDS = 1.0
SLOT_TURN_SECONDS = 5.0
SLOT_RETRY_SECONDS = 0.25
SLOT_WAIT_MOST_SECONDS = 2.0


class Senders:
    """The ``max_connections`` senders of one delivery, and what they share: the
    password, one login at a time (``AuthGate``), and this process's part of the
    profile's rate (``RateLimit``), which follows the slots it holds."""

    def __init__(self, delivering: Delivering, memory: InMemory, password: str | None) -> None:
        self.delivering = delivering
        self.memory = memory
        self.password = password
        # One login at a time until one succeeds; a refused password is not tried again.
        self.auth_gate = AuthGate()
        self.limit = RateLimit(delivering.profile.rate_per_second)
        self.limit.share(0.0)

    def start(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.sender())
            for _ in range(self.delivering.profile.max_connections)
        ]

    async def sender(self) -> None:
        """Send over one connection until told to end (None on the queue)."""
        d, m = self.delivering, self.memory
        profile = d.profile
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
                await d.db(lambda c: registry.give_slot(c, profile.id, held, d.worker_id))
                await self._slots_changed(-1)

        try:
            while True:
                if slot is None:
                    await m.has_work.wait()
                    if m.halt:
                        return
                    if m.active >= m.fair_share:
                        # This delivery holds its share of the profile's connections.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(m.halted.wait(), SLOT_WAIT_MOST_SECONDS)
                        continue
                    slot = await d.db(
                        lambda c: registry.take_slot(
                            c, profile.id, profile.max_connections, d.worker_id, d.run_id
                        )
                    )
                    if slot is None:
                        # Every slot is held (by other workers): look again, less often
                        # the longer it lasts, so waiting senders cost the database little.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                m.halted.wait(), retry * random.uniform(0.5, 1.5)
                            )
                        retry = min(SLOT_WAIT_MOST_SECONDS, retry * 2)
                        continue
                    retry = SLOT_RETRY_SECONDS
                    held_since = time.monotonic()
                    await self._slots_changed(+1)
                try:
                    outgoing = await asyncio.wait_for(m.queue.get(), SLOT_IDLE_SECONDS)
                except TimeoutError:
                    await give_back()
                    continue
                if outgoing is None:
                    return
                if m.fault is not None:
                    m.unsent.append(outgoing.due.id)
                    m.in_flight.discard(outgoing.due.id)
                    continue
                await self.limit.wait()
                try:
                    if smtp is None or not smtp.is_connected:
                        smtp = await open_connection(profile, self.password, self.auth_gate)
                    reply = await send(smtp, outgoing.envelope)
                    self._result(outgoing, reply=reply)
                except RunFault as fault:
                    m.fault = str(fault)
                    m.unsent.append(outgoing.due.id)
                    m.in_flight.discard(outgoing.due.id)
                    smtp = None
                except ConnectionFault as fault:
                    smtp = None
                    self._result(outgoing, fault=str(fault))
                await m.notify()
                if m.active > m.fair_share or (
                    m.contended and time.monotonic() - held_since > SLOT_TURN_SECONDS
                ):
                    await give_back()  # more than its share, or another run's turn
                    await asyncio.sleep(SLOT_RETRY_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await give_back()

    async def _slots_changed(self, delta: int) -> None:
        """Connections held changed: this process's part of the profile's rate follows them."""
        m = self.memory
        m.active += delta
        self.limit.share(m.active / self.delivering.profile.max_connections)
        await m.notify()

    def _result(
        self, outgoing: Outgoing, *, reply: Reply | None = None, fault: str | None = None
    ) -> None:
        d, m = self.delivering, self.memory
        due = outgoing.due
        now = d.clock.now()
        first_attempt_at = due.first_attempt_at or now
        outcome = policy.reply_outcome(
            code=reply.code if reply is not None else None,
            text=reply.text if reply is not None else "",
            fault=fault,
            attempts=due.attempts + 1,
            first_attempt_at=first_attempt_at,
            now=now,
            schedule=d.profile.retry_after_seconds,
            retry_for_seconds=d.profile.retry_for_seconds,
        )
        result = transitions.Result(
            due.id,
            outcome.state,
            smtp_code=reply.code if reply is not None else None,
            smtp_reply=reply.text if reply is not None else None,
            error=outcome.error,
            next_attempt_at=outcome.next_attempt_at,
            sent_at=now if outcome.state == SENT else None,
            customer_id=due.customer_id,
            address=due.address,
            document_id=due.document_id,
            offset_days=due.offset_days,
            hard_bounce=outcome.hard_bounce,
            first_attempt_at=first_attempt_at,
        )
        if outcome.state == SENT:
            m.sent += 1
        m.results.append(result)
        m.in_flight.discard(due.id)
