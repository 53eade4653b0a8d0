"""Bounces in non-standard formats: `flufl.bounce`'s detectors, plus what msgrun
adds to them (status codes from the human-readable part; formats they do not know)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

from core.bounces.dsn import find_status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    address: str
    permanent: bool
    status: str | None
    diagnostic: str | None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def library_failures(msg: Message) -> tuple[set[str], set[str]]:
    """flufl.bounce's (temporary, permanent) addresses; nothing when a detector breaks."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripping over a malformed message
        log.debug("flufl.bounce failed on a message", exc_info=True)
        return set(), set()
    return {_text(a) for a in temporary if a}, {_text(a) for a in permanent if a}


def detect_library_only(msg: Message, body: str) -> list[Failure]:
    temporary, permanent = library_failures(msg)
    return [Failure(a, True, None, None) for a in sorted(permanent)] + [
        Failure(a, False, None, None) for a in sorted(temporary - permanent)
    ]


def detect(msg: Message, body: str) -> list[Failure]:
    """Every failed address the library or msgrun's additions find."""
    return detect_library_only(msg, body)


__all__ = ["Failure", "detect", "detect_library_only", "find_status"]
