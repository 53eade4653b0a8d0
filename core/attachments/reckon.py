"""The size rule 20 reckons a message at, and the limit it is held to (attachments.md)."""

from __future__ import annotations

from collections.abc import Iterable

PER_ATTACHMENT = 1024
PER_MESSAGE = 8 * 1024
LINE = 76


def encoded_size(size: int) -> int:
    """Base64 of ``size`` bytes with its line breaks: 4 x ceil(size / 3), plus 2 bytes
    (CRLF) per line of 76 characters."""
    characters = 4 * -(-size // 3)
    return characters + 2 * -(-characters // LINE)


def reckoned_size(sizes: Iterable[int]) -> int:
    """A message's reckoned size: each attachment's encoded size + 1 KiB, + 8 KiB."""
    return PER_MESSAGE + sum(encoded_size(size) + PER_ATTACHMENT for size in sizes)


def size_limit(max_message_bytes: int | None, server_size: int | None) -> int | None:
    """The smaller of the profile's limit and the server's SIZE (0 or none: no limit)."""
    limits = [n for n in (max_message_bytes, server_size) if n is not None and n > 0]
    return min(limits) if limits else None


def limit_source(max_message_bytes: int | None, server_size: int | None) -> str:
    """Whose limit ``size_limit`` is, for a reason's detail."""
    limit = size_limit(max_message_bytes, server_size)
    if limit is not None and limit == max_message_bytes:
        return "the profile's max_message_bytes"
    return "the SIZE the server announced"
