"""Small display helpers shared by the console's screens."""

from __future__ import annotations

from datetime import datetime, tzinfo

from core.smtp_profiles import ProfileSummary

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


def last_test(summary: ProfileSummary, zone: tzinfo | None) -> str:
    """A profile's last test in words: when, and whether it passed."""
    if summary.last_test_at is None:
        return "[yellow]never tested[/]"
    when = summary.last_test_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if summary.last_test_ok:
        return f"[green]passed[/] {when}"
    passed = summary.last_test_ok_at
    since = f" (passed {passed.astimezone(zone):%Y-%m-%d})" if passed else ""
    return f"[red]failed[/] {when}{since}"


def fit_widths(
    width: int, fixed: dict[str, int], flexible: dict[str, tuple[int, int]], padding: int = 2
) -> dict[str, int]:
    """Column widths for a table ``width`` cells wide (each column also takes ``padding``).

    ``fixed`` columns keep their width; ``flexible`` ones (name → (least, natural))
    get their natural width when there is room, the last one taking what is left
    over, and shrink in proportion, never below their least, when there is not.
    """
    room = width - padding * (len(fixed) + len(flexible)) - sum(fixed.values())
    natural = sum(n for _, n in flexible.values())
    widths = dict(fixed)
    if room >= natural:
        names = list(flexible)
        for name in names:
            widths[name] = flexible[name][1]
        widths[names[-1]] += room - natural
        return widths
    for name, (least, size) in flexible.items():
        widths[name] = max(least, room * size // natural)
    return widths
