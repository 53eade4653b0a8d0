"""A program in a pseudo-terminal, as a person at a terminal runs it (standard library only).

Used by tests (the console, the demo) and by ``scripts/smoke-wheel``, which runs
it with whatever Python it finds, outside the checkout:

    python tests/terminal.py --until "msgrun · runs" --keys q -- msgrun --db URL

runs the command in a terminal of 100x30 that is its controlling terminal,
waits (bounded) until the text appears on the screen, types the keys, and
exits with the command's exit code (or 1 when the text never appeared, with
what the screen showed).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence

ESCAPES = re.compile(
    rb"\x1b\[[0-9;?<>=$]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\x1b\][^\x07]*\x07"
)


def _take_terminal(slave: int) -> None:  # pragma: no cover (runs in the child)
    # A new session whose controlling terminal is the pty: closing the other
    # end hangs up the whole session, as when an SSH link drops.
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)


class Terminal:
    """One command in a pty of ``columns`` x ``rows``; the screen text read so far."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        columns: int = 100,
        rows: int = 30,
    ) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        environ = dict(os.environ if env is None else env)
        environ.setdefault("TERM", "xterm-256color")
        environ.pop("TEXTUAL", None)
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environ,
            cwd=cwd,
            close_fds=True,
            preexec_fn=lambda: _take_terminal(0),
        )
        os.close(slave)
        self.raw = bytearray()

    @property
    def text(self) -> str:
        """What was written, escape sequences removed."""
        return ESCAPES.sub(b"", bytes(self.raw)).decode("utf-8", "replace")

    def read(self, seconds: float) -> None:
        """Read what the program writes for up to ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], min(left, 0.1))
            if not ready:
                if self.process.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the program has gone and the pty with it
                return
            if not chunk:
                return
            self.raw += chunk

    def wait_for(self, text: str, seconds: float = 60) -> bool:
        """Read until ``text`` is on the screen (True), or the time is up or it exited."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if text in self.text:
                return True
            if self.process.poll() is not None:
                self.read(0.2)
                return text in self.text
            self.read(0.2)
        return text in self.text

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def hang_up(self) -> None:
        """Close the terminal's other end: the session gets SIGHUP, as over a dropped link."""
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.master = -1

    def finish(self, seconds: float = 30) -> int | None:
        """Read until the program exits (its exit code), or None when it does not in time."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.master >= 0:
                self.read(0.2)
            if self.process.poll() is not None:
                return self.process.returncode
            if self.master < 0:
                time.sleep(0.1)
        return None

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.master >= 0:
            self.hang_up()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--until", required=True, help="text to wait for on the screen")
    parser.add_argument("--keys", default="", help="keys to type once it is there")
    parser.add_argument("--seconds", type=float, default=90, help="at most this long (90)")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    terminal = Terminal(args.command)
    try:
        if not terminal.wait_for(args.until, args.seconds):
            print(
                f"terminal: {args.until!r} never appeared; the screen showed:\n{terminal.text}",
                file=sys.stderr,
            )
            return 1
        terminal.type(args.keys)
        code = terminal.finish(args.seconds)
        if code is None:
            print(f"terminal: still running {args.seconds} s after {args.keys!r}", file=sys.stderr)
            return 1
        if code != 0:
            print(f"terminal: exit {code}; the screen showed:\n{terminal.text}", file=sys.stderr)
        return code
    finally:
        terminal.close()


if __name__ == "__main__":
    sys.exit(main())
