"""Sender processes: the lines of one delivery in child processes, so that a run uses
every core while the delivering process keeps the database.

The delivering process (the parent) reserves, reads, marks and records; each
child builds and sends: it opens the lines the parent asks for, builds and
sends the windows of drafts it is handed (``compose.Composer``), and reports
every attempt. Parent and
child speak over a socket pair, in frames (a 4-byte length, then a pickle):

    parent → child   (composer, password), then ("open", line)
                     · ("send", line, now, (first_in, spacing), [(id, draft), …])
                     · ("close", line)
    child → parent   a list of ("opened", line, fault) · ("attempt", line, attempt)
                     · ("done", line) · ("closed", line) · ("error", text)

A child's reports are gathered and written once per turn of its event loop.
A child dies with its parent (``PR_SET_PDEATHSIG`` on Linux; anywhere, it
ends as soon as the socket closes), so a parent killed with ``kill -9``
leaves no child sending: what was in flight is `unknown` on recovery, as for
the parent's own connections. A child that dies on its own ends the delivery
(``SenderProcessLost``); what it had in flight is then in doubt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from core.delivery.lines import (
    UNPACED,
    Attempt,
    Item,
    LocalLine,
    OnAttempt,
    Pacing,
)
from core.delivery.smtp import ConnectionFault, Reply, RunFault
from core.messages.compose import Composer, Draft

HEADER = struct.Struct("!I")
# How long a child may take to close its lines and end once asked, before it is killed.
STOP_SECONDS = 5.0


class SenderProcessLost(Exception):
    """A sender process ended while the delivery still needed it."""


# Drafts and attempts cross as plain tuples: pickling a dataclass costs ten times more.


def draft_wire(item: Item) -> tuple[Any, ...]:
    rid, d = item
    return (rid, d.position, d.message_id, d.address, d.to_name, d.values, d.files, d.zone)


def draft_of_wire(wire: tuple[Any, ...]) -> Item:
    return wire[0], Draft(*wire[1:])


def attempt_wire(a: Attempt) -> tuple[Any, ...]:
    code, text = (a.reply.code, a.reply.text) if a.reply is not None else (None, None)
    return (
        a.id,
        code,
        text,
        a.fault,
        a.run_fault,
        a.broken,
        a.tried,
        a.reason,
        a.attachments,
        a.lost,
        a.held_until,
    )


def attempt_of_wire(wire: tuple[Any, ...]) -> Attempt:
    rid, code, text, fault, run_fault, broken, tried, reason, attachments, lost, held = wire
    reply = Reply(code, text) if code is not None else None
    return Attempt(rid, reply, fault, run_fault, broken, tried, reason, attachments, lost, held)


def frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at the end of the stream."""
    try:
        header = await reader.readexactly(HEADER.size)
        return pickle.loads(await reader.readexactly(HEADER.unpack(header)[0]))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


# -- the child ---------------------------------------------------------------------------


class Outbox:
    """What the child has to say, written in one frame per turn of its event loop."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.messages: list[tuple[Any, ...]] = []

    def post(self, message: tuple[Any, ...]) -> None:
        if not self.messages:
            asyncio.get_running_loop().call_soon(self.flush)
        self.messages.append(message)

    def flush(self) -> None:
        messages, self.messages = self.messages, []
        if messages and not self.writer.is_closing():
            self.writer.write(frame(messages))

    async def fail(self, error: BaseException) -> None:
        """Tell the parent what went wrong, then end (the parent ends the delivery)."""
        self.post(("error", f"{type(error).__name__}: {error}"))
        self.flush()
        with contextlib.suppress(Exception):
            await self.writer.drain()
        os._exit(1)


def _fault_of(error: BaseException) -> tuple[str, str]:
    return ("run" if isinstance(error, RunFault) else "connection", str(error))


async def _line(
    number: int,
    commands: asyncio.Queue[tuple[Any, ...]],
    composer: Composer,
    password: str | None,
    outbox: Outbox,
) -> None:
    """One line of the child: its commands in order, on one SMTP connection."""

    def attempted(attempt: Attempt) -> None:
        outbox.post(("attempt", number, attempt_wire(attempt)))

    try:
        await _commands(number, commands, composer, password, outbox, attempted)
    except Exception as error:
        await outbox.fail(error)


async def _commands(
    number: int,
    commands: asyncio.Queue[tuple[Any, ...]],
    composer: Composer,
    password: str | None,
    outbox: Outbox,
    attempted: OnAttempt,
) -> None:
    line = LocalLine(composer, password)  # the same line as a delivery's own, here
    while True:
        command = await commands.get()
        if command[0] == "open":
            try:
                await line.open()
                outbox.post(("opened", number, None))
            except (RunFault, ConnectionFault) as error:
                outbox.post(("opened", number, _fault_of(error)))
        elif command[0] == "send":
            items = [draft_of_wire(wire) for wire in command[4]]
            await line.send(items, command[2], attempted, Pacing(*command[3]))
            outbox.post(("done", number))
        elif command[0] == "close":
            await line.close()
            outbox.post(("closed", number))
            return


async def _serve(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    outbox = Outbox(writer)
    config = await read_frame(reader)
    if config is None:
        return
    composer, password = config
    lines: dict[int, asyncio.Queue[tuple[Any, ...]]] = {}
    tasks: set[asyncio.Task[None]] = set()
    try:
        while (message := await read_frame(reader)) is not None:
            number = message[1]
            if message[0] == "open" and number not in lines:
                lines[number] = asyncio.Queue()
                task = asyncio.create_task(_line(number, lines[number], composer, password, outbox))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            queue = lines.get(number)
            if queue is not None:
                queue.put_nowait(message)
                if message[0] == "close":
                    del lines[number]
    except Exception as error:  # said to the parent, which ends the delivery with it
        await outbox.fail(error)
    # The parent has gone (or closed the socket after every line): end at once.
    os._exit(0)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when its parent dies (kill -9 included)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(0)


def _as_batch_work() -> None:
    """Linux: scheduled as batch work (SCHED_BATCH): as much CPU as before, but a process
    a person waits on (the console) is not kept waiting behind it when it wakes."""
    if hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def child_main(fd: int, parent: int) -> None:
    """A sender process: serve the lines its parent asks for over the socket ``fd``."""
    _die_with_parent(parent)
    _as_batch_work()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    sock = socket.socket(fileno=fd)
    try:
        import uvloop

        uvloop.run(_serve(sock))
    except ImportError:
        asyncio.run(_serve(sock))


# -- the parent --------------------------------------------------------------------------


class Child:
    """One sender process, as its parent sees it."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.writer: asyncio.StreamWriter | None = None
        self.reading: asyncio.Task[None] | None = None
        self.lines = 0  # lines open on it
        # Every command to a line has one answer, in order: line → the answers awaited.
        self.waiting: dict[int, deque[asyncio.Future[Any]]] = {}
        self.on_attempt: dict[int, OnAttempt] = {}  # recipient → whom to tell
        self.lost: SenderProcessLost | None = None
        self.stopping = False

    async def connect(self, composer: Composer, password: str | None) -> None:
        reader, self.writer = await asyncio.open_connection(sock=self.sock)
        self.writer.write(frame((composer, password)))
        self.reading = asyncio.create_task(self._read(reader))

    def send(self, message: tuple[Any, ...]) -> None:
        if self.lost is not None:
            raise self.lost
        assert self.writer is not None
        self.writer.write(frame(message))

    def ask(self, message: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Send a command to a line; its answer, when it comes."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.send(message)
        self.waiting.setdefault(message[1], deque()).append(future)
        return future

    def _answer(self, line: int, value: Any) -> None:
        waiting = self.waiting.get(line)
        if waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_result(value)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        said = ""
        while (batch := await read_frame(reader)) is not None:
            for message in batch:
                kind, line = message[0], message[1]
                if kind == "attempt":
                    attempt = attempt_of_wire(message[2])
                    callback = self.on_attempt.pop(attempt.id, None)
                    if callback is not None:
                        callback(attempt)
                elif kind in ("opened", "done", "closed"):
                    self._answer(line, message[2] if kind == "opened" else None)
                elif kind == "error":  # then it ends
                    said = f": {message[1]}"
        self._lose(f"sender process {self.process.pid} ended{said}")

    def _lose(self, why: str) -> None:
        self.lost = SenderProcessLost(why)
        for waiting in self.waiting.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(self.lost)
                    future.exception()  # retrieved: nobody may be left to await it
        self.waiting.clear()

    async def stop(self) -> None:
        """Close the socket (the child ends at once) and reap the process."""
        self.stopping = True
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.sock.close()
        try:
            await asyncio.to_thread(self.process.wait, STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
        if self.reading is not None:
            self.reading.cancel()
            with contextlib.suppress(BaseException):
                await self.reading

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


class RemoteLine:
    """A line in a sender process: each time it opens, on the child with the fewest open."""

    def __init__(self, processes: SenderProcesses, number: int) -> None:
        self.processes = processes
        self.number = number
        self.child: Child | None = None

    @property
    def is_open(self) -> bool:
        return self.child is not None and self.child.lost is None

    async def open(self) -> None:
        child = min(self.processes.children, key=lambda c: c.lines)
        child.lines += 1
        try:
            fault = await child.ask(("open", self.number))
        except BaseException:
            child.lines -= 1
            raise
        if fault is not None:
            child.lines -= 1
            kind, text = fault
            raise RunFault(text) if kind == "run" else ConnectionFault(text)
        self.child = child

    async def send(
        self,
        items: Sequence[Item],
        now: datetime,
        on_attempt: OnAttempt,
        pacing: Pacing = UNPACED,
    ) -> None:
        child = self.child
        assert child is not None, "a line sends once it is open"
        dropped = False

        def attempted(attempt: Attempt) -> None:
            nonlocal dropped
            dropped = dropped or (
                attempt.fault is not None
                or attempt.run_fault is not None
                or attempt.lost is not None
            )
            on_attempt(attempt)

        for rid, _ in items:
            child.on_attempt[rid] = attempted
        try:
            await child.ask(
                (
                    "send",
                    self.number,
                    now,
                    (pacing.first_in, pacing.spacing),
                    [draft_wire(item) for item in items],
                )
            )
        finally:
            for rid, _ in items:
                child.on_attempt.pop(rid, None)
        if dropped:  # the child's connection is closed: open it again next time
            await self.close()

    async def close(self) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        child.lines -= 1
        if child.lost is not None or child.stopping:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(child.ask(("close", self.number)), STOP_SECONDS)


def _source_root() -> str:
    """The folder holding the ``core`` package this process runs, for the children."""
    return str(Path(__file__).resolve().parents[2])


class SenderProcesses:
    """The sender processes of one delivery, and the lines they serve."""

    def __init__(self, composer: Composer, password: str | None, count: int) -> None:
        self.composer = composer
        self.password = password
        self.count = count
        self.children: list[Child] = []
        self.lines = 0

    async def start(self) -> None:
        code = (
            "import sys; sys.path.insert(0, {root!r}); "
            "from core.delivery.sender_processes import child_main; child_main({fd}, {pid})"
        )
        for _ in range(self.count):
            mine, theirs = socket.socketpair()
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    "-c",
                    code.format(root=_source_root(), fd=theirs.fileno(), pid=os.getpid()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            theirs.close()
            child = Child(process, mine)
            self.children.append(child)
            await child.connect(self.composer, self.password)

    def line(self) -> RemoteLine:
        self.lines += 1
        return RemoteLine(self, self.lines)

    async def stop(self) -> None:
        await asyncio.gather(*(child.stop() for child in self.children))

    def kill(self) -> None:
        for child in self.children:
            child.kill()
