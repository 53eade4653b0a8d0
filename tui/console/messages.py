"""The console's messages: work done off the UI thread reports back with one of these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class Performed(Message):
    """A confirmed write (stop, restart, start, save…) finished in a worker thread.

    ``then`` runs on the UI thread with the result; a failure is shown as a
    notice titled ``failure``.
    """

    result: Any
    error: Exception | None
    then: Callable[[Any], None] | None
    failure: str
