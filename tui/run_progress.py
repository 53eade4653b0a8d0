"""The progress bar of a run delivered in the foreground (stderr, terminals only)."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from core.states import FAILED, HELD, RETRYING, SENT
from core.views.runs import deliverable, done


class RunProgress:
    def __init__(self, run_id: int, total: int) -> None:
        self.console = Console(stderr=True)
        self.enabled = sys.stderr.isatty()
        self.bar = Progress(
            TextColumn(f"run {run_id}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = self.bar.add_task("deliver", total=None, detail="")

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.enabled:
            self.bar.stop()

    def update(self, counts: dict[str, int]) -> None:
        if not self.enabled:
            return
        detail = " ".join(f"{s} {counts[s]}" for s in (SENT, RETRYING, FAILED, HELD) if counts[s])
        self.bar.update(self.task, total=deliverable(counts), completed=done(counts), detail=detail)

    def say(self, text: str) -> None:
        self.console.print(text)
