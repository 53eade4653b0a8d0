"""Pictures of a run: one bar split by what became of its recipients, and bars by count.

Both are plots of textual-plotext's ``PlotextPlot`` (Plotext drawn as a Textual
widget): they take their size from the layout and are drawn again when it changes.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

# The colour of each part of a settled run's bar and of its name in the legend (RGB,
# as Plotext takes them, so that the bar and its legend agree whatever the theme).
PART_RGB: dict[str, tuple[int, int, int]] = {
    "delivered": (40, 170, 60),
    "bounced": (215, 40, 40),
    "complained": (230, 60, 230),
    "failed": (255, 135, 0),
    "unknown": (175, 90, 255),
    "not sent": (215, 200, 0),
    "excluded": (128, 128, 128),
}
OTHER_RGB = (220, 220, 220)
BAR_RGB = (215, 200, 0)  # the reason bars


def shares(counts: Mapping[str, int], width: int) -> dict[str, int]:
    """Each count's share of ``width`` cells (largest remainders): every non-zero gets one.

    The split bar is plotted in whole cells, so that no part vanishes (1 beside 100,000)
    and no cell is left half-drawn between two parts.
    """
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


def rgb(name: str) -> str:
    r, g, b = PART_RGB.get(name, OTHER_RGB)
    return f"rgb({r},{g},{b})"


def parts_legend(parts: Mapping[str, int]) -> Text:
    """``delivered 5  bounced 1 …``: the non-zero parts, each in its bar colour."""
    legend = Text()
    for name, n in parts.items():
        if n:
            if legend:
                legend.append("  ")
            legend.append(f"{name} {n:,}", style=rgb(name))
    return legend


class Chart(PlotextPlot):
    """A Plotext plot with no frame, axes or ticks, drawn on the widget's own background.

    Subclasses plot their data in ``draw``; the plot is built again at each render, at
    the size the layout gave the widget.
    """

    def draw(self, plt: Plot) -> None:
        raise NotImplementedError

    def render(self) -> RenderResult:
        plt = self.plt
        plt.clear_data()
        width, height = self.size.width, self.size.height
        plt.plotsize(width, height)
        plt._set_size(width, height)  # as PlotextPlot.render does (textual-plotext#5)
        self.draw(plt)
        plt.frame(False)
        plt.xaxes(False)
        plt.yaxes(False)
        plt.xticks([])
        _, _, background, color = self.colors
        plt.canvas_color(background.rgb)
        plt.axes_color(background.rgb)
        plt.ticks_color(color.rgb)
        return Text.from_ansi(plt.build())


class SplitBar(Chart):
    """One row: a settled run's recipients, split in proportion to what became of them."""

    DEFAULT_CSS = "SplitBar { height: 1; width: 1fr; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.parts: dict[str, int] = {}

    def show_parts(self, parts: Mapping[str, int]) -> None:
        if dict(parts) != self.parts:
            self.parts = dict(parts)
            self.refresh()

    def draw(self, plt: Plot) -> None:
        cells = [(name, n) for name, n in shares(self.parts, self.size.width).items() if n]
        if cells:
            plt.stacked_bar(
                [""],
                [[n] for _, n in cells],
                orientation="horizontal",
                # One colour a part: Plotext takes a list, which its type hints leave out.
                color=[PART_RGB.get(name, OTHER_RGB) for name, _ in cells],  # type: ignore[arg-type]
                width=1,
            )
            plt.xlim(0, sum(n for _, n in cells))
        plt.yticks([])


class CountBars(Chart):
    """Horizontal bars, one row each, largest first: ``suppressed 4 ████████``.

    Its height is the number of bars (set by ``show_counts``), so each gets one row.
    """

    DEFAULT_CSS = "CountBars { height: auto; width: 1fr; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.counts: list[tuple[str, int]] = []

    def show_counts(self, counts: Mapping[str, int]) -> None:
        present = [(name, n) for name, n in counts.items() if n > 0]
        ranked = sorted(present, key=lambda item: (-item[1], item[0]))
        self.styles.height = len(ranked)
        self.display = bool(ranked)
        if ranked != self.counts:
            self.counts = ranked
            self.refresh()

    def labels(self) -> list[str]:
        """``name  n ``, the names left-aligned, the numbers right-aligned, a space after."""
        if not self.counts:
            return []
        name = max(len(n) for n, _ in self.counts)
        number = max(len(f"{v:,}") for _, v in self.counts)
        return [f"{n:<{name}} {v:>{number},} " for n, v in self.counts]

    def draw(self, plt: Plot) -> None:
        labels = self.labels()
        if not labels:
            return
        values = [v for _, v in self.counts]
        # Plotext draws the first bar at the bottom: the largest goes last. Every bar
        # has its first cell, so 1 beside 100,000 does not vanish.
        plt.bar(labels[::-1], values[::-1], orientation="horizontal", color=BAR_RGB, width=0.5)
        plt.xlim(0, max(values))
        # Plotext puts the limits on the first and last rows' centres: with the bars
        # at 1…n, each has its own row and none spills into the next.
        plt.ylim(1, max(2, len(labels)))
