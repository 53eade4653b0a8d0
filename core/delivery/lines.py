"""Lines: one SMTP connection of a delivery, in this process or in a sender process.

A line opens (connect, greet, secure and log in: ``smtp.open_connection``),
sends a window of built messages one after another and says what became of
each (``Attempt``), and closes. ``LocalLine`` does it on this event loop;
the lines of ``sender_processes.SenderProcesses`` do it in child processes, so
that one run uses every core (the delivering process keeps the database).

The senders (``senders.py``) hold the profile's connection slots and decide
what each line sends; a line only talks SMTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiosmtplib

from core.delivery.message import Envelope
from core.delivery.smtp import (
    ConnectionFault,
    ProfileSettings,
    Reply,
    RunFault,
    open_connection,
    send,
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What became of one message handed to a line.

    Exactly one of: ``reply`` (the server answered it), ``fault`` (the
    connection failed on it: it may be tried again), ``run_fault`` (a fault of
    the profile: nothing can be sent), or ``tried`` False (the line stopped
    before trying it, after a fault on an earlier message: it was not sent).
    """

    id: int
    reply: Reply | None = None
    fault: str | None = None
    run_fault: str | None = None
    tried: bool = True


# One message for a line: the recipient's id and its envelope.
Item = tuple[int, Envelope]
OnAttempt = Callable[[Attempt], None]


class Line(Protocol):
    """One connection of the profile, held by a sender while it holds a slot."""

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None:
        """Connect and log in; RunFault or ConnectionFault when that fails."""

    async def send(self, items: Sequence[Item], on_attempt: OnAttempt) -> None:
        """Send ``items`` in turn, calling ``on_attempt`` once for each, in order.

        After a fault the line is closed and the items after it are not tried.
        """

    async def close(self) -> None:
        """Say QUIT (quietly: a connection that is gone is just dropped)."""


LineFactory = Callable[[], Line]


def attempts_after_fault(items: Sequence[Item], start: int) -> list[Attempt]:
    """The items from ``start`` on, not tried."""
    return [Attempt(rid, tried=False) for rid, _ in items[start:]]


async def send_window(
    smtp: aiosmtplib.SMTP, items: Sequence[Item], on_attempt: OnAttempt
) -> bool:
    """Send ``items`` over ``smtp`` in turn; False when a fault closed the connection."""
    for i, (rid, envelope) in enumerate(items):
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

    def __init__(self, profile: ProfileSettings, password: str | None) -> None:
        self.profile = profile
        self.password = password
        self.smtp: aiosmtplib.SMTP | None = None

    @property
    def is_open(self) -> bool:
        return self.smtp is not None and self.smtp.is_connected

    async def open(self) -> None:
        self.smtp = await open_connection(self.profile, self.password)

    async def send(self, items: Sequence[Item], on_attempt: OnAttempt) -> None:
        assert self.smtp is not None, "a line sends once it is open"
        if not await send_window(self.smtp, items, on_attempt):
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


def local_lines(profile: ProfileSettings, password: str | None) -> LineFactory:
    return lambda: LocalLine(profile, password)
