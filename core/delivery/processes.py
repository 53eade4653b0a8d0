"""Delivering processes by name: ``host:pid:nonce`` ids, and whether one of this
machine is gone.

A delivering process names itself in the registry and on the leases it holds
as ``[role:]host:pid:nonce``. Pids are reused, so the nonce carries the
process's start time as the kernel counts it (Linux: ``/proc/PID/stat``,
field 22) after a dot: a process of this machine is gone when its pid names
no process, a zombie (killed, not yet waited for by its parent), or a process
that started at another time (the pid was reused). A process elsewhere cannot
be looked at: only its lease lapsing says it is gone.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

ROLES = ("worker", "run")


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from ``/proc``; None where it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # "pid (command) state ppid …": the command may hold spaces and parentheses.
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def start_time(pid: int) -> str | None:
    """When process ``pid`` started, as the kernel counts it; None where unknown."""
    stat = _stat(pid)
    return stat[1] if stat is not None else None


def new_nonce() -> str:
    """A nonce naming this process: random, then its start time after a dot."""
    nonce = uuid.uuid4().hex[:8]
    started = start_time(os.getpid())
    return f"{nonce}.{started}" if started else nonce


def process_id(role: str | None = None) -> str:
    """``[role:]host:pid:nonce`` for this process (a worker id, or a lease's owner)."""
    name = f"{socket.gethostname()}:{os.getpid()}:{new_nonce()}"
    return f"{role}:{name}" if role else name


@dataclass(frozen=True)
class Named:
    """The process an id names."""

    host: str
    pid: int
    started: str | None  # its start time, when the id records it

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    def gone(self) -> bool:
        """A process of this machine that no longer runs (never true of one elsewhere)."""
        return self.here and process_gone(self.pid, self.started)


def named(process: str) -> Named | None:
    """The process ``[role:]host:pid:nonce`` names; None for anything else."""
    parts = process.split(":")
    if parts and parts[0] in ROLES:
        parts = parts[1:]
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    _, dot, started = parts[2].partition(".")
    return Named(parts[0], int(parts[1]), started if dot and started.isdigit() else None)


def process_gone(pid: int, started: str | None = None) -> bool:
    """Process ``pid`` of this machine is gone: none, a zombie, or another that took its pid.

    ``started``: the start time it had (``start_time``), when known.
    """
    stat = _stat(pid)
    if stat is not None:
        state, now_started = stat
        return state in ("Z", "X") or (started is not None and now_started != started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: it exists
        return False
    except (OverflowError, ValueError):  # no process has such a pid
        return True
    return False
