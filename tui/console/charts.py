"""Pictures of a run: one bar split by what became of its recipients, and bars by count."""

from __future__ import annotations

from collections.abc import Mapping

from rich.markup import escape
from rich.text import Text

# The colour of each part of a settled run's bar (and of its name in the legend).
PART_STYLE = {
    "delivered": "green",
    "bounced": "red",
    "complained": "bright_magenta",
    "failed": "dark_orange",
    "unknown": "magenta",
    "not sent": "yellow",
    "excluded": "grey50",
}
BLOCK = "█"


def shares(counts: Mapping[str, int], width: int) -> dict[str, int]:
    """Each count's share of ``width`` cells (largest remainders): every non-zero gets one."""
    total = sum(counts.values())
    if total <= 0 or width <= 0:
        return dict.fromkeys(counts, 0)
    present = [name for name, n in counts.items() if n > 0]
    width = max(width, len(present))
    cells = {name: (1 if counts[name] > 0 else 0) for name in counts}
    room = width - len(present)
    exact = {name: counts[name] * room / total for name in present}
    for name in present:
        cells[name] += int(exact[name])
    left = width - sum(cells.values())
    for name in sorted(present, key=lambda n: (exact[n] - int(exact[n]), counts[n]), reverse=True):
        if left <= 0:
            break
        cells[name] += 1
        left -= 1
    return cells


def parts_bar(parts: Mapping[str, int], width: int) -> Text:
    """One bar ``width`` cells wide, split in proportion to the parts, each in its colour."""
    bar = Text()
    for name, cells in shares(parts, width).items():
        if cells:
            bar.append(BLOCK * cells, style=PART_STYLE.get(name, "white"))
    return bar


def parts_legend(parts: Mapping[str, int]) -> Text:
    """``delivered 5  bounced 1 …``: the non-zero parts, each in its bar colour."""
    legend = Text()
    for name, n in parts.items():
        if n:
            if legend:
                legend.append("  ")
            legend.append(f"{name} {n:,}", style=PART_STYLE.get(name, "white"))
    return legend


def count_bars(counts: Mapping[str, int], width: int) -> str:
    """Horizontal bars, one line per name (largest first), as console markup.

    ``suppressed        ████████ 4``: the longest bar is ``width`` cells.
    """
    if not counts:
        return ""
    label = max(len(name) for name in counts)
    number = max(len(f"{n:,}") for n in counts.values())
    bars = max(1, width - label - number - 2)
    peak = max(counts.values())
    lines = []
    for name, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        cells = max(1, round(n * bars / peak)) if n else 0
        bar = f"[yellow]{BLOCK * cells}[/]{' ' * (bars - cells)}"
        lines.append(f"{escape(name):<{label}} {bar} {n:>{number},}")
    return "\n".join(lines)
