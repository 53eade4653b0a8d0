"""Lines: one SMTP connection of a delivery, in this process or in a sender process.

A line opens (connect, greet, secure and log in: ``smtp.open_connection``),
builds and sends a window of messages one after another (``compose.Composer``,
from the drafts the delivering process read) and says what became of each
(``Attempt``), and closes. ``LocalLine`` does it on this event loop;
the lines of ``sender_processes.SenderProcesses`` do it in child processes, so
that one run uses every core (the delivering process keeps the database).

The senders (``senders.py``) hold the profile's connection slots and decide
what each line sends; a line only talks SMTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import aiosmtplib

from core.delivery.compose import Composer, Draft
from core.delivery.smtp import (
    ConnectionFault,
    Reply,
    RunFault,
    open_connection,
    send,
)
from core.templating import RenderError


@dataclass(frozen=True, slots=True)
class Attempt:
    """What became of one message handed to a line.

    Exactly one of: ``reply`` (the server answered it), ``fault`` (the
    connection failed on it: it may be tried again), ``run_fault`` (a fault of
    the profile: nothing can be sent), ``broken`` (its message could not be
    built: a template failed for it, say; it was not sent), or ``tried`` False
    (the line stopped before trying it, after a fault on an earlier message).
    """

    id: int
    reply: Reply | None = None
    fault: str | None = None
    run_fault: str | None = None
    broken: str | None = None
    tried: bool = True


# One message for a line: the recipient's id and its draft.
Item = tuple[int, Draft]
OnAttempt = Callable[[Attempt], None]


class Line(Protocol):
    """One connection of the profile, held by a sender while it holds a slot."""

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None:
        """Connect and log in; RunFault or ConnectionFault when that fails."""

    async def send(self, items: Sequence[Item], now: datetime, on_attempt: OnAttempt) -> None:
        """Build (dated ``now``) and send ``items`` in turn, calling ``on_attempt`` once
        for each, in order. After a fault the line is closed and the items after it
        are not tried. A window sent while another is under way goes after it (not
        tried either when the one before closed the line).
        """

    async def close(self) -> None:
        """Say QUIT (quietly: a connection that is gone is just dropped)."""


LineFactory = Callable[[], Line]


def attempts_after_fault(items: Sequence[Item], start: int) -> list[Attempt]:
    """The items from ``start`` on, not tried."""
    return [Attempt(rid, tried=False) for rid, _ in items[start:]]


async def send_window(
    smtp: aiosmtplib.SMTP,
    composer: Composer,
    items: Sequence[Item],
    now: datetime,
    on_attempt: OnAttempt,
) -> bool:
    """Build and send ``items`` over ``smtp`` in turn; False when a fault closed the
    connection."""
    for i, (rid, draft) in enumerate(items):
        try:
            envelope = composer.build(draft, now)
        except (RenderError, ValueError) as error:
            on_attempt(Attempt(rid, broken=str(error)))
            continue
        try:
            reply = await send(smtp, envelope)
        except RunFault as fault:
            on_attempt(Attempt(rid, run_fault=str(fault)))
            for attempt in attempts_after_fault(items, i + 1):
                on_attempt(attempt)
            return False
        except ConnectionFault as fault:
            on_attempt(Attempt(rid, fault=str(fault)))
            for attempt in attempts_after_fault(items, i + 1):
                on_attempt(attempt)
            return False
        on_attempt(Attempt(rid, reply=reply))
    return True


class LocalLine:
    """A line on this event loop."""

    def __init__(self, composer: Composer, password: str | None) -> None:
        self.composer = composer
        self.password = password
        self.smtp: aiosmtplib.SMTP | None = None
        self.turn = asyncio.Lock()  # one window at a time on the connection

    @property
    def is_open(self) -> bool:
        return self.smtp is not None and self.smtp.is_connected

    async def open(self) -> None:
        self.smtp = await open_connection(self.composer.profile, self.password)

    async def send(self, items: Sequence[Item], now: datetime, on_attempt: OnAttempt) -> None:
        async with self.turn:
            if self.smtp is None:  # the window before closed the line
                for attempt in attempts_after_fault(items, 0):
                    on_attempt(attempt)
            elif not await send_window(self.smtp, self.composer, items, now, on_attempt):
                self.smtp = None

    async def close(self) -> None:
        await quit_quietly(self.smtp)
        self.smtp = None


async def quit_quietly(smtp: aiosmtplib.SMTP | None) -> None:
    """QUIT within 2 s; a connection that does not answer is closed."""
    if smtp is not None and smtp.is_connected:
        try:
            await asyncio.wait_for(smtp.quit(), timeout=2)
        except Exception:
            smtp.close()


def local_lines(composer: Composer, password: str | None) -> LineFactory:
    return lambda: LocalLine(composer, password)
