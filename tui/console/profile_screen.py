"""One SMTP profile: edit its connection settings, test it step by step, send a test message.

The form is saved only on request (ctrl+s). A test uses the form as it
stands, saved or not, so a fix can be tried before it is kept; the result is
recorded on the profile only when the form holds the saved settings.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Input, Label, Select, Static

from core.addresses import address_problem
from core.passwords import find_password, missing
from core.passwords import source as password_source
from core.smtp_check import CheckReport, Step, check_profile, load_profile, record_result
from core.smtp_profiles import (
    ProfileEdit,
    ProfileSettings,
    ProfileSummary,
    list_profiles,
    save_edit,
)
from core.storage.database import Database
from core.vocabulary import SECURITY_MODES
from tui.console.confirm import Confirm
from tui.console.formatting import last_test
from tui.console.live import LiveScreen
from tui.console.widgets import FieldInput


def step_lines(step: Step) -> str:
    """One step as console markup: mark, name, time, the server's words, the hint."""
    mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
    line = f"{mark} [b]{step.step:<9}[/b] {step.ms:7.1f} ms  {escape(step.detail)}"
    if step.hint:
        line += f"\n  [yellow]→ {escape(step.hint)}[/]"
    if step.warning:
        line += f"\n  [yellow]! {escape(step.warning)}[/]"
    return line


@dataclass(frozen=True)
class Stored:
    """The profile as the database has it, its last test, and where its password is."""

    settings: ProfileSettings
    summary: ProfileSummary | None
    password: str  # where the password comes from, as console markup


def password_words(settings: ProfileSettings, environ: Mapping[str, str]) -> str:
    """Where the profile's password comes from. May ask the OS keyring (which can be slow,
    or prompt to unlock): call it in a worker thread, never on the UI thread."""
    if not settings.password_env:
        return "no password set"
    found = password_source(settings.password_env, environ)
    if found == "env":
        return f"password from ${settings.password_env}"
    if found == "keyring":
        return f"password from the OS keyring ({settings.password_env})"
    return f"[b red]no password here[/]: {missing(settings.password_env, environ)}"


def read_stored(database: Database, profile_id: str) -> Stored:
    """In a worker thread: the profile, its last test, and where its password is."""
    settings = load_profile(database, profile_id)
    summary = next((p for p in list_profiles(database) if p.settings.id == profile_id), None)
    return Stored(settings, summary, password_words(settings, os.environ))


def with_password(settings: ProfileSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with the profile's password looked up once (in the OS keyring when
    so configured), so that a test asks no keyring from the UI's event loop. In a worker
    thread."""
    found = dict(environ)
    name = settings.password_env
    if name and not found.get(name):
        password = find_password(name, found)
        if password:
            found[name] = password
    return found


def certificates(security: str, settings: ProfileSettings) -> str:
    """What the connection's security checks, in words true for the mode in the form."""
    if security == "none":
        return "[yellow]no TLS[/]: nothing encrypted"
    if not settings.tls_verify:
        return "[b red]CERTIFICATES NOT VERIFIED[/] (tls_verify false)"
    return "certificates verified" + (
        f" with {escape(settings.ca_file)}" if settings.ca_file else ""
    )


class ProfileScreen(LiveScreen[Stored]):
    AUTO_FOCUS = "#field-host"
    PURPOSE = (
        "Edit a profile's host, port, security and user (saved only with ctrl+s); test it "
        "step by step with ctrl+t; type an address and press ctrl+n to send a test message."
    )
    BINDINGS = [
        Binding("ctrl+t", "test", "Test", id="profile.test"),
        Binding("ctrl+n", "send", "Send test message", id="profile.send"),
        Binding("ctrl+s", "save", "Save", id="profile.save"),
        Binding("escape", "back", "Back", id="profile.back"),
    ]

    def __init__(self, profile_id: str) -> None:
        super().__init__()
        self.profile_id = profile_id
        self.saved: ProfileSettings | None = None
        self.steps: list[Step] = []
        self.verdict = ""
        self.testing = False
        self.summary: ProfileSummary | None = None
        self.password = ""  # where the password comes from, as the last load found
        # The form as it was tested: an edit after the test makes its verdict stale.
        self.tested: ProfileEdit | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"msgrun · SMTP profile {self.profile_id}", id="title-bar")
        with Horizontal(classes="field"):
            yield Label("Host", classes="field-label")
            yield FieldInput(id="field-host", compact=True)
        with Horizontal(classes="field"):
            yield Label("Port", classes="field-label")
            yield FieldInput(id="field-port", compact=True, restrict=r"[0-9]*", max_length=5)
        with Horizontal(classes="field"):
            yield Label("Security", classes="field-label")
            yield Select(
                [(mode, mode) for mode in SECURITY_MODES],
                id="field-security",
                allow_blank=False,
                compact=True,
            )
        with Horizontal(classes="field"):
            yield Label("User", classes="field-label")
            yield FieldInput(id="field-user", compact=True, placeholder="none: no AUTH")
        yield Static("", id="profile-facts", classes="summary")
        with Horizontal(classes="field"):
            yield Label("Test to", classes="field-label")
            yield FieldInput(
                id="field-to",
                compact=True,
                placeholder="an address for a test message, then ctrl+n",
            )
        with VerticalScroll(classes="scroll", id="profile-steps-box"):
            yield Static("", id="profile-steps")
        yield Footer()

    @property
    def database(self) -> Database:
        return self.console.database

    def on_mount(self) -> None:
        self._show_steps()

    def load(self) -> Stored:
        """The stored profile, its last test and where its password is (read in a worker
        thread: the OS keyring is asked here, never on the UI thread)."""
        return read_stored(self.database, self.profile_id)

    def show(self, data: Stored) -> None:
        if self.saved is None:  # the first read fills the form
            self.saved = data.settings
            self._fill(data.settings)
        self.summary = data.summary
        self.password = data.password
        self._show_facts()

    def _fill(self, settings: ProfileSettings) -> None:
        edit = ProfileEdit.of(settings)
        self.query_one("#field-host", Input).value = edit.host
        self.query_one("#field-port", Input).value = edit.port
        self.query_one("#field-security", Select).value = edit.security
        self.query_one("#field-user", Input).value = edit.username

    def edit(self) -> ProfileEdit:
        security = self.query_one("#field-security", Select).value
        return ProfileEdit(
            host=self.query_one("#field-host", Input).value,
            port=self.query_one("#field-port", Input).value,
            security=str(security),
            username=self.query_one("#field-user", Input).value,
        )

    @property
    def dirty(self) -> bool:
        return self.saved is not None and self.edit() != ProfileEdit.of(self.saved)

    def on_input_changed(self) -> None:
        self._edited()

    def on_select_changed(self) -> None:
        self._edited()

    def _edited(self) -> None:
        """A field changed: the facts follow, and a test of other settings says it is stale."""
        if self.saved is None:
            return
        if self.tested is not None and not self.testing and self.edit() != self.tested:
            self.tested = None
            self.steps = []
            self.verdict = (
                "[yellow]The form changed after the last test: its result no longer holds. "
                "ctrl+t tests the form as it stands.[/]"
            )
            self._show_steps()
        self._show_facts()

    def _show_facts(self) -> None:
        if self.saved is None:
            return
        settings, password = self.saved, self.password
        verify = certificates(self.edit().security, settings)
        summary = self.summary
        tested = last_test(summary, self.console.clock.now().tzinfo) if summary else ""
        state = "[b yellow]unsaved changes[/] (ctrl+s saves)" if self.dirty else "saved"
        self.query_one("#profile-facts", Static).update(
            f"Sender {escape(settings.from_address)} · {password} · {verify}\n"
            f"Last test: {tested} · {state}"
        )

    def _show_steps(self) -> None:
        lines = [step_lines(step) for step in self.steps]
        if self.testing:
            lines.append("[dim]…[/]")
        if self.verdict:
            lines.append(self.verdict)
        if not lines:
            lines = ["ctrl+t tests the profile as the form stands: connect, TLS, login."]
        self.query_one("#profile-steps", Static).update("\n".join(lines))

    # -- actions ---------------------------------------------------------------------

    def action_test(self) -> None:
        self._start(to=None)

    def action_send(self) -> None:
        to = self.query_one("#field-to", Input).value.strip()
        problem = address_problem(to) if to else "empty"
        if problem is not None:
            self.notify(
                f"Test to: {to!r} is not an address ({problem})",
                title="Cannot send a test message",
                severity="error",
            )
            self.query_one("#field-to", Input).focus()
            return
        self._start(to=to)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "field-to":
            self.action_send()

    def _start(self, to: str | None) -> None:
        if self.testing or self.saved is None:
            return
        try:
            settings = self.edit().applied_to(self.saved)
        except ValueError as error:
            self.notify(str(error), title="Fix the form first", severity="error")
            return
        self.steps = []
        self.testing = True
        self.verdict = ""
        self.tested = self.edit()
        self._show_steps()
        self.run_worker(self._run_check(settings, to, record=not self.dirty), group="smtp-test")

    async def _run_check(self, settings: ProfileSettings, to: str | None, record: bool) -> None:
        def arrived(step: Step) -> None:
            self.steps.append(step)
            self._show_steps()

        console = self.console
        environ = await asyncio.to_thread(with_password, settings, os.environ)
        report: CheckReport = await check_profile(
            settings,
            environ,
            to=to,
            on_step=arrived,
            now=console.clock.now,
            timer=console.stopwatch,
        )
        self.testing = False
        if report.ok:
            sent = f": a test message went to {escape(to)}" if to else ""
            self.verdict = f"[b green]Every step passed{sent}.[/]"
        else:
            self.verdict = f"[b red]Failed at {report.failed_step}.[/]"
        auth = report.sender_auth_verdict
        self.verdict += (
            f"\n[green]{auth}.[/]" if report.sender_auth_ok else f"\n[b yellow]{auth}.[/]"
        )
        if record:
            at = console.clock.now()
            await asyncio.to_thread(
                record_result, self.database, settings.id, report.ok, at, report
            )
            self.summary = await asyncio.to_thread(
                lambda: read_stored(self.database, self.profile_id).summary
            )
        else:
            self.verdict += " [dim](unsaved settings: not recorded as the profile's last test)[/]"
        self._show_steps()
        self._show_facts()

    def action_save(self) -> None:
        if self.saved is None:
            return
        if not self.dirty:
            self.notify("Nothing to save: the form holds the saved settings.")
            return
        edit = self.edit()
        try:
            edit.applied_to(self.saved)  # every problem named before anything is written
        except ValueError as error:
            self.notify(str(error), title="Not saved", severity="error")
            return
        database, profile_id = self.database, self.profile_id

        def saved(settings: ProfileSettings) -> None:
            self.saved = settings
            self.notify(f"Profile {profile_id} saved.")
            self._show_facts()

        self.console.perform(
            lambda: save_edit(database, profile_id, edit), saved, failure="Not saved"
        )

    def action_back(self) -> None:
        if not self.dirty:
            self.app.pop_screen()
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.app.pop_screen()

        self.app.push_screen(
            Confirm(
                f"Discard the unsaved changes to profile {self.profile_id}?",
                "ctrl+s saves them instead.",
            ),
            answered,
        )
