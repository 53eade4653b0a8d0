"""Small display helpers shared by the console's screens."""

from __future__ import annotations

from datetime import datetime, tzinfo

from rich.text import Text
from textual.widgets import DataTable, Static

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


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``1,234 definitions``."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def hhmmss(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S") if value is not None else ""


def clip_id(text: str | None, width: int) -> str:
    """An id cut to ``width`` keeping its first character and its end, where ids that
    share a prefix differ: ``C001000010`` → ``C…000010``, not ``C001000…``."""
    if text is None or len(text) <= width or width < 4:
        return clip(text, width)
    return text[0] + "…" + text[len(text) - (width - 2) :]


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


Column = tuple[str, int, int]  # name, least width, natural width


def fit_columns(
    width: int,
    columns: list[Column],
    give_way: list[str],
    grow: list[str] | None = None,
    padding: int = 2,
) -> dict[str, int]:
    """Which columns fit in ``width`` cells, and how wide each is.

    Every column gets at least its least width; when even that does not fit,
    columns leave in the order ``give_way`` names. What is left over widens the
    columns towards their natural width in the order ``grow`` names (else left
    to right), and the last growing column takes any rest. A column whose least
    and natural widths are equal keeps that width.
    """
    shown = list(columns)
    leaving = list(give_way)

    def need(cols: list[Column]) -> int:
        return sum(least + padding for _, least, _ in cols)

    while need(shown) > width and leaving:
        name = leaving.pop(0)
        shown = [c for c in shown if c[0] != name]
    widths = {name: least for name, least, _ in shown}
    room = width - need(shown)
    order = [c for name in grow or [] for c in shown if c[0] == name]
    order += [c for c in shown if c not in order]
    for name, least, natural in order:
        extra = min(room, natural - least)
        widths[name] += extra
        room -= extra
    flexible = [name for name, least, natural in order if natural > least]
    if room > 0 and flexible:
        widths[flexible[-1]] += room
    return widths


def add_columns(
    table: DataTable[str],
    columns: list[Column],
    give_way: list[str],
    width: int,
    grow: list[str] | None = None,
) -> dict[str, int]:
    """Add the columns that fit a terminal ``width`` wide (less the scrollbar and edge)."""
    return place_columns(table, columns, fit_columns(width - 3, columns, give_way, grow))


def place_columns(
    table: DataTable[str], columns: list[Column], widths: dict[str, int], *, again: bool = False
) -> dict[str, int]:
    """Give ``table`` the columns of ``widths`` (fixed for a terminal size, so that live
    refreshes never make them jump); ``again``: first remove the ones it has."""
    if again:
        table.clear(columns=True)
    for label, _, _ in columns:
        if label in widths:
            table.add_column(label, width=widths[label], key=label)
    return widths


def row_line(cells: list[str], widths: list[int]) -> Text:
    """Table cells (console markup) as one line of text: each cropped to its width
    (with ``…``) and padded, a space either side, as a DataTable draws a row.

    A table whose rows are such lines (``WindowTable``: one line a row, no cells)
    looks the same and draws many times faster: Rich lays out one cell a row, not
    one per column (a run's window is repainted at every key).
    """
    line = Text(no_wrap=True, end="")
    for markup, width in zip(cells, widths, strict=True):
        # Only a cell with markup is parsed (escape() leaves no "[" unescaped).
        cell = Text.from_markup(markup) if "[" in markup else Text(markup)
        cell.truncate(width, overflow="ellipsis", pad=True)
        line.append(" ")
        line.append_text(cell)
        line.append(" ")
    return line


def header_line(columns: list[Column], widths: dict[str, int]) -> Text:
    """The header of a table of ``row_line`` rows: the names of the columns of ``widths``."""
    shown = [(label, widths[label]) for label, _, _ in columns if label in widths]
    return row_line([label for label, _ in shown], [w for _, w in shown])


def show_text(widget: Static, content: str | Text) -> None:
    """Update a Static only when what it shows changes: an update lays the screen out
    again, and a live screen repaints a few times a second."""
    key = content.markup if isinstance(content, Text) else content
    if getattr(widget, "_msgrun_shown", None) != key:
        widget._msgrun_shown = key  # type: ignore[attr-defined]
        widget.update(content)
