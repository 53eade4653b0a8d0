"""Small display helpers shared by the console's screens."""

from __future__ import annotations

from datetime import datetime

STATE_STYLE = {
    "sent": "green",
    "completed": "green",
    "failed": "red",
    "unknown": "magenta",
    "retrying": "yellow",
    "held": "cyan",
    "waiting": "cyan",
    "pending": "white",
    "sending": "bold yellow",
    "excluded": "dim",
    "running": "bold yellow",
    "stopping": "yellow",
    "stopped": "yellow",
    "completed_with_failures": "red",
    "included": "green",
    "deferred": "cyan",
}


def styled(state: str) -> str:
    style = STATE_STYLE.get(state, "white")
    return f"[{style}]{state}[/]"


def hhmmss(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S") if value is not None else ""


def clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
