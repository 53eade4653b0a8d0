"""Writing results to stdout, quietly surviving a closed pipe (``| head``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tui.errors import OperationFailed


def write_out(text: str | Iterable[str]) -> None:
    """Write text (or its pieces, as they come) to stdout, ending with a newline."""
    pieces = [text] if isinstance(text, str) else text
    last = ""
    try:
        for piece in pieces:
            if piece:
                sys.stdout.write(piece)
                last = piece
        if not last.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away: stop writing, and keep Python from complaining at exit.
        _quiet_stdout()
    except OSError as error:  # a full disk, a device that takes nothing (/dev/full)
        _quiet_stdout()
        raise OperationFailed(
            f"cannot write to standard output: {error.strerror or error}"
        ) from None


def _quiet_stdout() -> None:
    """What is left in stdout's buffer goes nowhere (else Python complains at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
