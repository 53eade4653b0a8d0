"""Lost after the data (domain.md): a connection lost after the final "." of a message's
data and before the reply leaves that message in doubt (``unknown``); a fault before it
is a connection fault, retried. Here, what a line says of each message of a window, in
this process and in a sender process; the delivery tests show the recipients' states."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from core.delivery.lines import Attempt, Line, LocalLine
from core.delivery.policy import FINAL_REPLY_SECONDS, final_reply_seconds
from core.delivery.sender_processes import SenderProcesses
from core.messages.compose import Composer, Draft, Templates
from fixtures.smtp_servers import Faults, SmtpServer
from tests.test_profile_faults import settings

pytestmark = pytest.mark.timeout(60)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_the_reply_to_the_data_is_awaited_ten_minutes_or_the_timeout_when_longer() -> None:
    assert FINAL_REPLY_SECONDS == 600
    assert final_reply_seconds(30) == 600
    assert final_reply_seconds(900) == 900


def composer(port: int) -> Composer:
    templates = Templates("inv", "Invoice", "Hello", None, {"name": "Pools", "timezone": "UTC"})
    return Composer(1, settings(port), templates)


def window(count: int) -> list[tuple[int, Draft]]:
    return [
        (i, Draft(i, f"<m{i}@pools.example.com>", f"p{i}@example.org", None, {}))
        for i in range(count)
    ]


async def send_window(line: Line) -> list[Attempt]:
    attempts: list[Attempt] = []
    await line.open()
    await line.send(window(5), NOW, attempts.append)
    await line.close()
    return attempts


async def on_a_local_line(port: int) -> list[Attempt]:
    return await send_window(LocalLine(composer(port), None))


async def on_a_sender_process(port: int) -> list[Attempt]:
    processes = SenderProcesses(composer(port), None, 1)
    await processes.start()
    try:
        return await send_window(processes.line())
    finally:
        await processes.stop()


@pytest.mark.parametrize("where", [on_a_local_line, on_a_sender_process])
def test_a_window_whose_line_is_lost_after_a_message_s_data(where) -> None:  # type: ignore[no-untyped-def]
    faults = Faults(data={"p2@example.org": ["keep-and-disconnect"]})
    with SmtpServer(faults=faults) as server:
        attempts = asyncio.run(where(server.port))
    assert [a.id for a in attempts] == [0, 1, 2, 3, 4]
    assert [a.reply.code if a.reply else None for a in attempts[:2]] == [250, 250]
    # The one whose data went: in doubt, not a connection fault to retry.
    assert attempts[2].lost is not None and attempts[2].fault is None
    assert "after the message's data" in attempts[2].lost
    # Those after it never went on the wire: not tried (another connection sends them).
    assert [a.tried for a in attempts[3:]] == [False, False]
    assert set(server.recipients()) == {"p0@example.org", "p1@example.org", "p2@example.org"}


@pytest.mark.parametrize("where", [on_a_local_line, on_a_sender_process])
def test_a_window_whose_line_drops_before_a_message_s_data(where) -> None:  # type: ignore[no-untyped-def]
    faults = Faults(rcpt={"p2@example.org": ["disconnect"]})
    with SmtpServer(faults=faults) as server:
        attempts = asyncio.run(where(server.port))
    assert attempts[2].fault is not None and attempts[2].lost is None
    assert [a.tried for a in attempts[3:]] == [False, False]
    assert set(server.recipients()) == {"p0@example.org", "p1@example.org"}
