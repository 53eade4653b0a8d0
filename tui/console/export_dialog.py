"""``e`` on a run: the recipients the filter shows, written to a CSV file off the UI thread.

A file that exists is replaced only once a confirmation says so.
"""

from __future__ import annotations

from pathlib import Path

from rich.filesize import decimal
from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from core.storage import Database
from core.views.export_file import (
    BadTarget,
    TargetExists,
    check_target,
    default_name,
    export_csv,
    named_format,
)
from core.views.export_rows import Selection
from tui.console.confirm import Confirm
from tui.console.widgets import FieldInput


class ExportDialog(ModalScreen[tuple[Path, int] | None]):
    """The file's path (a default in the working directory); errors shown here, in place.

    Dismissed with (the file written, how many recipients it holds), or None.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]

    def __init__(self, database: Database, run_id: int, chosen: Selection, search: str) -> None:
        super().__init__()
        self.database = database
        self.run_id = run_id
        self.chosen = chosen
        self.search = search
        self.writing = False

    def compose(self) -> ComposeResult:
        what = ", ".join((*self.chosen.states, *self.chosen.outcomes)) or "every recipient"
        note = ""
        if self.search:
            note = f"\n(the filter only: the search {escape(repr(self.search))} is not applied)"
        with Vertical(id="export"):
            yield Static(f"Export run {self.run_id}: {escape(what)} as CSV", id="export-title")
            yield Static(f"to this file (a name alone: in the working directory){note}")
            yield FieldInput(default_name(self.run_id, self.chosen), id="export-path")
            yield Static("", id="export-error")
            yield Static("[b]enter[/b] write    [b]esc[/b] cancel", id="export-keys")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.writing:
            return
        self._start(event.value, replace=False)

    def _start(self, path: str, replace: bool) -> None:
        self.writing = True
        self.query_one("#export-error", Static).update("writing…")
        self.run_worker(lambda: self._write(path, replace), thread=True, group="export")

    def _write(self, path: str, replace: bool) -> None:
        """In a worker thread: check the path, then write the file whole (a file that
        exists: only once ``replace`` is confirmed)."""
        if named_format(path) == "json":
            why = f"{path} names a JSON file; the console writes CSV: name it .csv"
            self.app.call_from_thread(self._failed, why)
            return
        try:
            target = check_target(path, "file", replace)
            written = export_csv(self.database, self.run_id, self.chosen, target, replace=replace)
        except TargetExists as error:
            self.app.call_from_thread(self._ask_to_replace, path, error.target)
        except BadTarget as error:
            self.app.call_from_thread(self._failed, str(error))
        except Exception as error:  # shown in the dialog; never a traceback
            self.app.call_from_thread(self._failed, f"{type(error).__name__}: {error}")
        else:
            self.app.call_from_thread(self.dismiss, (target.resolve(), written))

    def _ask_to_replace(self, path: str, target: Path) -> None:
        try:
            size = f"It holds {decimal(target.stat().st_size)}, which would be lost."
        except OSError:
            size = "What it holds would be lost."
        link = " (a link: the file it points at is replaced)" if target.is_symlink() else ""

        def answered(yes: bool | None) -> None:
            if yes:
                self._start(path, replace=True)
            else:
                self._failed(f"{path} exists and was not replaced: name another file")

        self.app.push_screen(
            Confirm(
                f"Replace {escape(path)}?",
                f"The file exists{escape(link)}. {size} The export is written in its place.",
            ),
            answered,
        )

    def _failed(self, why: str) -> None:
        self.writing = False
        self.query_one("#export-error", Static).update(escape(why))
        self.query_one("#export-path", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
