"""What a recipient's message carried, as each view writes it (attachments.md, Evidence)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.states import SENT


def size_text(size: int) -> str:
    """``312 bytes``, ``47 KiB``, ``2.4 MiB``."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{round(size / 1024)} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def export_text(attachments: Sequence[dict[str, Any]] | None) -> str | None:
    """The export's ``attachments`` column: ``NAME (N bytes)`` items joined by ``; ``."""
    if not attachments:
        return None
    return "; ".join(f"{a['name']} ({a['bytes']} bytes)" for a in attachments)


def sent_lines(
    attachments: Sequence[dict[str, Any]] | None,
    state: str,
    sent_at: datetime | None,
    *,
    with_sha256: bool = True,
) -> list[str]:
    """``sent 2026-0042.pdf, 47 KiB, 2026-12-05 09:00`` for each attachment (``carried``
    when the message was not accepted), with its SHA-256 unless told not to."""
    verb = "sent" if state == SENT else "carried"
    when = f", {sent_at:%Y-%m-%d %H:%M}" if state == SENT and sent_at is not None else ""
    return [
        f"{verb} {a['name']}, {size_text(int(a['bytes']))}{when}"
        + (f" · sha256 {a['sha256']}" if with_sha256 else "")
        for a in attachments or ()
    ]
