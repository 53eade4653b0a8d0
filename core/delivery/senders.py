"""The senders: each holds one of the profile's connection slots and sends over one line
(a reused SMTP connection: ``lines.py``, in this process or a sender process).

A slot (a row shared by every process: ``registry.take_slot``) is taken when
there is work and given back when the sender has been idle a moment, or,
while other runs want the profile, after a turn of ``SLOT_TURN_SECONDS``; a
delivery holds at most its fair share of them (``policy.fair_share``).

A sender hands its line a window of the messages ready — its part of the
group the feeder marked, so that a line in another process never waits for
this one — or, under a rate limit, one message at a time, each after its turn
of the profile's rate. What a reply makes of the recipient is
``policy.reply_outcome``; results wait in memory for the controller to record
them. The first line logs in alone; after a refused login no other tries. The
same refusal (or template failure), or a file missing, for 20 recipients in a
row, in the order their results are recorded, is a fault of the run
(``streaks.py``). A message that could not be built once the run has its fault
is not failed but left `pending`: nothing of it reached the server, and the
run ended before it (so exactly the 20 are failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

from core.delivery import policy, registry, streaks, transitions
from core.delivery.lines import UNPACED, Attempt, Line, LineFactory, Pacing
from core.delivery.pipeline import Delivering, InMemory, Outgoing
from core.delivery.smtp import AuthGate, ConnectionFault, RateLimit, Reply, RunFault
from core.states import FAILED, SENT, UNKNOWN

# Windows under way on one line: two, so that a line in another process is never left
# waiting for the next.
WINDOWS_UNDER_WAY = 2

# A sender gives its connection slot back after this long without a message,
# and, while other runs want the profile, after holding it this long.
SLOT_IDLE_SECONDS = 1.0
SLOT_TURN_SECONDS = 5.0
SLOT_RETRY_SECONDS = 0.25
SLOT_WAIT_MOST_SECONDS = 2.0


class Senders:
    """The ``max_connections`` senders of one delivery, and what they share: one
    login at a time until one succeeds (``AuthGate``), and this process's part of
    the profile's rate (``RateLimit``), which follows the slots it holds."""

    def __init__(self, delivering: Delivering, memory: InMemory, lines: LineFactory) -> None:
        self.delivering = delivering
        self.memory = memory
        self.lines = lines
        self.auth_gate = AuthGate()
        self.limit = RateLimit(delivering.profile.rate_per_second)
        self.limit.share(0.0)
        # The same refusal, the same template failure, a file missing, in a row (streaks.py).
        self.refusals = streaks.NONE
        self.render_failures = streaks.NONE
        self.missing_files = streaks.NONE

    def start(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(Sender(self).run())
            for _ in range(self.delivering.profile.max_connections)
        ]

    def window(self) -> int:
        """How many ready messages one sender hands its line at once.

        Its part of a quarter of the group the feeder marks (``policy.mark_group``),
        with two windows under way on each line, so that the next is there when a
        line finishes one (under a rate limit the line spaces them: ``pacing``).
        """
        m = self.memory
        group = policy.mark_group(m.replies.per_second(), self.delivering.profile.max_connections)
        return max(1, group // (4 * max(1, m.active)))

    def pacing(self) -> Pacing:
        """Under the profile's rate: the window's first message at its turn of this
        delivery's rate, and every message of a line one connection slot's part of the
        profile's rate after the one before."""
        rate = self.delivering.profile.rate_per_second
        if not rate:
            return UNPACED
        return Pacing(self.limit.turn(), self.delivering.profile.max_connections / rate)

    async def _open(self, line: Line, batch: list[Outgoing]) -> bool:
        """Open the line, the first one alone; False (the batch dealt with) when it fails."""
        m, gate = self.memory, self.auth_gate
        try:
            if gate.refused is not None:
                raise RunFault(gate.refused)
            if gate.accepted:
                await line.open()
            else:
                async with gate.lock:
                    if gate.refused is not None:
                        raise RunFault(gate.refused)
                    await line.open()
                    gate.accepted = True
            return True
        except RunFault as fault:
            gate.refused = gate.refused or str(fault)
            m.fault = m.fault or str(fault)
            self._unsent(batch)
        except ConnectionFault as fault:
            # The first message takes the fault (it is tried again later); the rest
            # go back for another connection.
            self._result(batch[0], fault=str(fault))
            m.ready.put_back(batch[1:])
        await m.notify()
        return False

    async def _send(self, line: Line, batch: list[Outgoing], pacing: Pacing) -> None:
        m = self.memory
        by_id = {o.due.id: o for o in batch}
        untried: list[Outgoing] = []

        def attempted(attempt: Attempt) -> None:
            outgoing = by_id[attempt.id]
            if attempt.run_fault is not None:
                m.fault = m.fault or attempt.run_fault
                self._unsent([outgoing])
            elif not attempt.tried:
                untried.append(outgoing)
            elif attempt.broken is not None:  # its message could not be built: failed
                if m.fault is not None:  # after the run's fault: not sent, not failed
                    self._unsent([outgoing])
                else:
                    self._result(outgoing, broken=attempt.broken, attempt=attempt)
            elif attempt.fault is not None:
                self._result(outgoing, fault=attempt.fault, attempt=attempt)
                self.missing_files = streaks.NONE  # its message was built: its files were there
            elif attempt.lost is not None:  # lost after its data: it may have arrived
                self._result(outgoing, lost=attempt.lost, attempt=attempt)
                self.missing_files = streaks.NONE
            elif attempt.held_until is not None:  # its quiet hours began: not an attempt
                m.held.append((outgoing.due.id, attempt.held_until))
                m.in_flight.discard(outgoing.due.id)
            else:
                assert attempt.reply is not None
                self._result(outgoing, reply=attempt.reply, attempt=attempt)
                self.missing_files = streaks.NONE

        items = [(o.due.id, o.draft) for o in batch]
        await line.send(items, self.delivering.clock.now(), attempted, pacing)
        if untried:
            if m.fault is not None:
                self._unsent(untried)
            else:  # the line dropped before them: another connection sends them
                m.ready.put_back(untried)

    def _unsent(self, batch: list[Outgoing]) -> None:
        """Marked `sending`, never handed to a connection: they go back to `pending`."""
        m = self.memory
        for outgoing in batch:
            m.unsent.append(outgoing.due.id)
            m.in_flight.discard(outgoing.due.id)

    async def _slots_changed(self, delta: int) -> None:
        """Connections held changed: this process's part of the profile's rate follows them."""
        m = self.memory
        m.active += delta
        self.limit.share(m.active / self.delivering.profile.max_connections)
        await m.notify()

    def _result(
        self,
        outgoing: Outgoing,
        *,
        reply: Reply | None = None,
        fault: str | None = None,
        broken: str | None = None,
        attempt: Attempt | None = None,
        lost: str | None = None,
    ) -> None:
        d, m = self.delivering, self.memory
        due = outgoing.due
        now = d.clock.now()
        first_attempt_at = due.first_attempt_at or now
        # What the message carried, recorded with every attempt of a run that attaches.
        carried = (
            list(attempt.attachments if attempt is not None else ())
            if d.templates.attacher is not None
            else None
        )
        if broken is not None:
            reason = attempt.reason if attempt is not None else None
            m.results.append(
                transitions.Result(
                    due.id,
                    FAILED,
                    error=broken,
                    customer_id=due.customer_id,
                    reasons=[{"code": reason, "detail": broken}] if reason else None,
                    attachments=carried,
                    attempted_at=now,
                    fault=broken,
                )
            )
            m.in_flight.discard(due.id)
            self._after_broken(broken, reason)
            return
        if lost is not None:  # in doubt, as after a crash: never tried again unasked
            m.results.append(
                transitions.Result(
                    due.id,
                    UNKNOWN,
                    error=lost,
                    customer_id=due.customer_id,
                    first_attempt_at=first_attempt_at,
                    attachments=carried,
                    attempted_at=now,
                    fault=lost,
                )
            )
            m.in_flight.discard(due.id)
            return
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
            attachments=carried,
            attempted_at=now,
            fault=fault,
        )
        if outcome.state == SENT:
            m.sent += 1
        m.results.append(result)
        m.replies.add()
        m.in_flight.discard(due.id)
        if reply is not None:
            self.render_failures = streaks.NONE
            self.refusals = streaks.after_reply(self.refusals, reply.code, reply.text)
            self._fault(streaks.refusals_fault(self.refusals))

    def _after_broken(self, broken: str, reason: str | None) -> None:
        """The streaks after a message that could not be built (``streaks.py``): a file
        missing counts in its own streak, never as a template failure."""
        if reason == "document_file_missing":
            self.render_failures = streaks.NONE  # its template rendered
            self.missing_files = streaks.after_missing_file(self.missing_files, broken)
            attacher = self.delivering.templates.attacher
            folder = attacher.folder if attacher is not None else None
            self._fault(streaks.missing_files_fault(self.missing_files, folder))
            return
        if reason is not None:  # built, then refused by msgrun (too large): its template
            # rendered and its files were there; a verdict on this recipient's message alone
            self.missing_files = self.render_failures = streaks.NONE
            return
        self.render_failures = streaks.after_render_failure(self.render_failures, broken)
        self._fault(streaks.render_fault(self.render_failures))

    def _fault(self, fault: str | None) -> None:
        """A fault of the run (the first one found is its reason): nothing more is sent."""
        if fault is not None and self.memory.fault is None:
            self.memory.fault = fault


class Sender:
    """One sender: a connection slot, its line, and the windows under way on it."""

    def __init__(self, senders: Senders) -> None:
        self.senders = senders
        self.delivering = senders.delivering
        self.memory = senders.memory
        self.line: Line | None = None
        self.slot: int | None = None
        self.held_since = 0.0
        self.windows: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Send until the senders are told to end.

        Cancelled (another process took the run over), it leaves the windows under
        way at once rather than waiting for their replies (up to
        ``policy.FINAL_REPLY_SECONDS`` each): what they had in flight is the new
        holder's to decide (`unknown`).
        """
        try:
            await self._run()
        except asyncio.CancelledError:
            for task in self.windows:
                task.cancel()
            await asyncio.gather(*self.windows, return_exceptions=True)
            self.windows.clear()
            raise
        finally:
            with contextlib.suppress(Exception):
                await self.give_back()
            for task in self.windows:  # left under way only when the sender was cancelled
                task.cancel()
            await asyncio.gather(*self.windows, return_exceptions=True)

    async def _run(self) -> None:
        m, senders = self.memory, self.senders
        while True:
            if self.slot is None:
                if not await self.take_slot():
                    return
                continue
            if self.windows and (
                len(self.windows) >= WINDOWS_UNDER_WAY or not m.ready or m.ready.closed
            ):
                await self.settle()  # one window done
                await m.notify()
                if m.active > m.fair_share or (
                    m.contended and time.monotonic() - self.held_since > SLOT_TURN_SECONDS
                ):
                    await self.give_back()  # more than its share, or another run's turn
                    await asyncio.sleep(SLOT_RETRY_SECONDS)
                continue
            if not await m.ready.wait(SLOT_IDLE_SECONDS):
                await self.give_back()
                continue
            if m.ready.closed:
                return
            batch = m.ready.take(senders.window())
            if m.fault is not None:
                senders._unsent(batch)
                continue
            if self.line is None or not self.line.is_open:
                await self.settle(every=True)  # a line opens again with nothing under way
                if m.fault is not None:
                    senders._unsent(batch)
                    continue
                self.line = self.line or senders.lines()
                if not await senders._open(self.line, batch):
                    continue
            self.windows.add(asyncio.create_task(senders._send(self.line, batch, senders.pacing())))

    async def take_slot(self) -> bool:
        """Wait for work and take one of the profile's connection slots; False: the
        delivery is ending."""
        d, m = self.delivering, self.memory
        profile = d.profile
        retry = SLOT_RETRY_SECONDS
        while True:
            await m.has_work.wait()
            if m.halt:
                return False
            if m.active >= m.fair_share:
                # This delivery holds its share of the profile's connections.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(m.halted.wait(), SLOT_WAIT_MOST_SECONDS)
                continue
            self.slot = await d.db(
                lambda c: registry.take_slot(
                    c, profile.id, profile.max_connections, d.worker_id, d.run_id
                )
            )
            if self.slot is not None:
                self.held_since = time.monotonic()
                await self.senders._slots_changed(+1)
                return True
            # Every slot is held (by other workers): look again, less often the
            # longer it lasts, so waiting senders cost the database little.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(m.halted.wait(), retry * random.uniform(0.5, 1.5))
            retry = min(SLOT_WAIT_MOST_SECONDS, retry * 2)

    async def settle(self, *, every: bool = False) -> None:
        """Wait for one window under way (``every``: all of them) to be done."""
        if not self.windows:
            return
        done, _ = await asyncio.wait(
            self.windows,
            return_when=asyncio.ALL_COMPLETED if every else asyncio.FIRST_COMPLETED,
        )
        self.windows -= done
        # Every window's error is retrieved (an error left unretrieved is logged when
        # the task is collected); the first ends the delivery (a sender process lost).
        errors = [t.exception() for t in done if not t.cancelled()]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    async def give_back(self) -> None:
        """Finish what is under way, close the line, give the slot back."""
        d = self.delivering
        await self.settle(every=True)
        if self.line is not None:
            line, self.line = self.line, None
            await line.close()
        if self.slot is not None:
            held, self.slot = self.slot, None
            await d.db(lambda c: registry.give_slot(c, d.profile.id, held, d.worker_id))
            await self.senders._slots_changed(-1)
