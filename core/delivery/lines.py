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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiosmtplib

from core.attachments.folder import FileProblem, FolderMissing
from core.attachments.reckon import limit_source, size_limit
from core.delivery.smtp import (
    ConnectionFault,
    LostAfterData,
    Reply,
    RunFault,
    open_connection,
    send,
)
from core.delivery.streaks import folder_fault
from core.messages.compose import Composer, Draft
from core.messages.message import Envelope
from core.smtp_profiles import ProfileSettings
from core.templating import RenderError


@dataclass(frozen=True, slots=True)
class Attempt:
    """What became of one message handed to a line.

    Exactly one of: ``reply`` (the server answered it), ``fault`` (the
    connection failed on it before its data was complete: it may be tried
    again), ``lost`` (the connection was lost after its data and before the
    reply: it may have been delivered), ``run_fault`` (a fault of the profile:
    nothing can be sent), ``broken`` (its message could not be built: a
    template failed for it, say; it was not sent), ``held_until`` (its quiet
    hours were in force when its turn to go on the wire came: not sent, not an
    attempt, until then), or ``tried`` False (the line stopped before trying it,
    after a fault on an earlier message).
    """

    id: int
    reply: Reply | None = None
    fault: str | None = None
    run_fault: str | None = None
    broken: str | None = None
    tried: bool = True
    # A broken message's reason code, when it has one (document_file_missing,
    # message_too_large: attachments.md); its detail is ``broken``.
    reason: str | None = None
    # What the message carried: {"name", "bytes", "sha256"} each.
    attachments: tuple[dict[str, Any], ...] = ()
    lost: str | None = None
    held_until: datetime | None = None


# One message for a line: the recipient's id and its draft.
Item = tuple[int, Draft]


@dataclass(frozen=True, slots=True)
class Pacing:
    """How a window is paced under the profile's rate: its first message not before
    ``first_in`` seconds from now (its turn of the delivery's rate), and every message
    of the line at least ``spacing`` seconds after the one before — one connection
    slot's part of the profile's rate (``max_connections / rate_per_second``), which
    holds the profile's rate however many processes hold its slots."""

    first_in: float = 0.0
    spacing: float = 0.0


UNPACED = Pacing()


class Pace:
    """A line's timeline under ``Pacing``: when each of its messages may go."""

    def __init__(self) -> None:
        self.next_at = 0.0

    def turn(self, pacing: Pacing, first: bool, start: float) -> float:
        """Take the next message's turn: the ``time.monotonic()`` instant it may go."""
        if not pacing.spacing and not pacing.first_in:
            return time.monotonic()
        at = max(self.next_at, start + pacing.first_in if first else 0.0)
        self.next_at = at + pacing.spacing
        return at

    def give_back(self, at: float, pacing: Pacing) -> None:
        """A message that took the turn ``at`` did not go: the next may take it."""
        if self.next_at == at + pacing.spacing:
            self.next_at = at


OnAttempt = Callable[[Attempt], None]


class Line(Protocol):
    """One connection of the profile, held by a sender while it holds a slot."""

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None:
        """Connect and log in; RunFault or ConnectionFault when that fails."""

    async def send(
        self,
        items: Sequence[Item],
        now: datetime,
        on_attempt: OnAttempt,
        pacing: Pacing = UNPACED,
    ) -> None:
        """Build (dated ``now``) and send ``items`` in turn, as ``pacing`` lets them go,
        calling ``on_attempt`` once for each, in order. After a fault the line is
        closed and the items after it are not tried. A window sent while another is
        under way goes after it (not tried either when the one before closed the line).
        """

    async def close(self) -> None:
        """Say QUIT (quietly: a connection that is gone is just dropped)."""


LineFactory = Callable[[], Line]


def attempts_after_fault(items: Sequence[Item], start: int) -> list[Attempt]:
    """The items from ``start`` on, not tried."""
    return [Attempt(rid, tried=False) for rid, _ in items[start:]]


def wire_instant(now: datetime, handed: float, at: float) -> datetime:
    """The instant a message goes on the wire at ``time.monotonic()`` ``at``, for a
    window handed over at ``now`` (the delivery's clock), ``handed`` on this clock."""
    return now + timedelta(seconds=max(0.0, at - handed))


async def send_window(
    smtp: aiosmtplib.SMTP,
    composer: Composer,
    items: Sequence[Item],
    now: datetime,
    on_attempt: OnAttempt,
    pace: Pace | None = None,
    pacing: Pacing = UNPACED,
    handed: float | None = None,
) -> bool:
    """Build and send ``items`` over ``smtp`` in turn, each when ``pace`` lets it go;
    False when a fault closed the connection.

    Quiet hours count when a message's MAIL FROM is written (domain.md, Quiet
    hours at the wire): one whose turn under the rate limit comes once they have
    begun is held at once (not waited for), and one whose quiet hours began
    while it waited is held then; neither is sent, nor built.
    """
    start = time.monotonic()
    handed = start if handed is None else handed
    quiet = composer.templates.quiet_hours is not None
    for i, (rid, draft) in enumerate(items):
        at = pace.turn(pacing, i == 0, start) if pace is not None else start
        if quiet:
            until = composer.quiet_until(draft, wire_instant(now, handed, at))
            if until is not None:
                if pace is not None:
                    pace.give_back(at, pacing)
                on_attempt(Attempt(rid, held_until=until))
                continue
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if quiet:
            until = composer.quiet_until(draft, wire_instant(now, handed, time.monotonic()))
            if until is not None:
                on_attempt(Attempt(rid, held_until=until))
                continue
        try:
            envelope = composer.build(draft, now)
        except (RenderError, ValueError) as error:
            on_attempt(Attempt(rid, broken=str(error)))
            continue
        except FileProblem as problem:  # never sent without the file
            on_attempt(Attempt(rid, broken=str(problem), reason="document_file_missing"))
            continue
        except FolderMissing as missing:  # a fault of the definition: nothing can be sent
            on_attempt(Attempt(rid, run_fault=folder_fault(str(missing))))
            for attempt in attempts_after_fault(items, i + 1):
                on_attempt(attempt)
            return False
        if (too_large := over_limit(envelope, composer.profile, smtp)) is not None:
            on_attempt(
                Attempt(
                    rid,
                    broken=too_large,
                    reason="message_too_large",
                    attachments=envelope.attachments,
                )
            )
            continue
        try:
            reply = await send(smtp, envelope)
        except RunFault as fault:
            on_attempt(Attempt(rid, run_fault=str(fault)))
            for attempt in attempts_after_fault(items, i + 1):
                on_attempt(attempt)
            return False
        except ConnectionFault as fault:
            on_attempt(Attempt(rid, fault=str(fault), attachments=envelope.attachments))
            for attempt in attempts_after_fault(items, i + 1):
                on_attempt(attempt)
            return False
        except LostAfterData as lost:
            on_attempt(Attempt(rid, lost=str(lost), attachments=envelope.attachments))
            for attempt in attempts_after_fault(items, i + 1):
                on_attempt(attempt)
            return False
        on_attempt(Attempt(rid, reply=reply, attachments=envelope.attachments))
    return True


def server_size(smtp: aiosmtplib.SMTP) -> int | None:
    """The SIZE the server's EHLO announced (None: none, 0 or without a number)."""
    value = smtp.esmtp_extensions.get("size", "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else None


def over_limit(envelope: Envelope, profile: ProfileSettings, smtp: aiosmtplib.SMTP) -> str | None:
    """Why a message with attachments is too large to send (both sizes), or None."""
    if not envelope.attachments:
        return None
    announced = server_size(smtp)
    limit = size_limit(profile.max_message_bytes, announced)
    if limit is None or len(envelope.data) <= limit:
        return None
    return (
        f"the message with its attachments is {len(envelope.data):,} bytes, over the limit "
        f"of {limit:,} bytes ({limit_source(profile.max_message_bytes, announced)}): not sent"
    )


class LocalLine:
    """A line on this event loop."""

    def __init__(self, composer: Composer, password: str | None) -> None:
        self.composer = composer
        self.password = password
        self.smtp: aiosmtplib.SMTP | None = None
        self.turn = asyncio.Lock()  # one window at a time on the connection
        self.pace = Pace()

    @property
    def is_open(self) -> bool:
        return self.smtp is not None and self.smtp.is_connected

    async def open(self) -> None:
        self.smtp = await open_connection(self.composer.profile, self.password)

    async def send(
        self,
        items: Sequence[Item],
        now: datetime,
        on_attempt: OnAttempt,
        pacing: Pacing = UNPACED,
    ) -> None:
        handed = time.monotonic()  # ``now`` on this clock (a window may wait for the one before)
        async with self.turn:
            if self.smtp is None or not self.smtp.is_connected:
                # The window before closed the line, or the server did: none is tried.
                for attempt in attempts_after_fault(items, 0):
                    on_attempt(attempt)
            elif not await send_window(
                self.smtp, self.composer, items, now, on_attempt, self.pace, pacing, handed
            ):
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
