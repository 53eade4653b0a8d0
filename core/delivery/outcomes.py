"""What reports said about recipients after sending (placeholder until reports are stored)."""

from __future__ import annotations

from typing import Any


def of_recipients(
    connection: Any, recipient_ids: list[int]
) -> dict[int, tuple[str | None, str | None, str | None]]:
    return {}
