"""The console's SMTP screens: a profile tested step by step against real servers, in pictures.

Each picture has a fixed port (the form shows it), a steady stopwatch (every
step takes 6.25 ms) and a certificate authority with fixed names and dates.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from core.smtp_check import load_profile
from core.smtp_profiles import list_profiles
from core.storage import Database, open_database
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import load_ok, sample
from tests.console_support import console
from tests.test_console import settle
from tui.console.profile_screen import ProfileScreen
from tui.console.profiles_screen import ProfilesScreen

SIZE = (100, 32)
SECRET = "s3cret-Pa55"
# Fixed ports: the form shows the port, so pictures need the same one every time.
PLAIN, STARTTLS, AUTH, RELAY, SILENT = 42525, 42526, 42527, 42528, 42529
CLOSED = 1
pytestmark = pytest.mark.timeout(120)


class Steady:
    """A stopwatch read twice a step: every step takes 6.25 ms."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        self.seconds += 0.00625
        return self.seconds


def profile_database(folder: Path, **changes: Any) -> Database:
    database = open_database(f"sqlite:///{folder / 'smtp.db'}")
    data = sample()
    data["smtp_profiles"][0].update(
        {"host": "127.0.0.1", "security": "none", "username": None, "password_env": None} | changes
    )
    load_ok(database, data)
    return database


def smtp_console(database: Database) -> Any:
    return console(database, stopwatch=Steady())


@pytest.fixture(scope="module")
def server_context() -> ssl.SSLContext:
    authority = trustme.CA(organization_name="Example Mail CA", organization_unit_name="Testing")
    leaf = authority.issue_cert(
        "127.0.0.1",
        organization_name="Example Mail",
        organization_unit_name="Mail",
        not_before=datetime(2026, 1, 1),
        not_after=datetime(2027, 6, 30),
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return context


@pytest.fixture
def env_password(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MSGRUN_TEST_SMTP_PASSWORD", "wrong-" + SECRET)
    yield


def on_profile(*pressed: str, to: str | None = None) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.app.push_screen(ProfileScreen("main"))
        await settle(pilot)
        if to is not None:
            pilot.app.screen.query_one("#field-to", Input).value = to
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return run


def steps_text(app: Any) -> str:
    return str(app.screen.query_one("#profile-steps", Static).render())


def test_the_profiles_list(snap_compare: Any, tmp_path: Path) -> None:
    database = profile_database(tmp_path, port=PLAIN)

    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)

    assert snap_compare(smtp_console(database), terminal_size=SIZE, run_before=run)


def test_a_profile_that_passes_and_sends_a_test_message(snap_compare: Any, tmp_path: Path) -> None:
    database = profile_database(tmp_path, port=PLAIN)
    with SmtpServer(port=PLAIN) as server:
        app = smtp_console(database)
        assert snap_compare(
            app, terminal_size=SIZE, run_before=on_profile("ctrl+n", to="ana@example.org")
        )
        (message,) = server.messages()
    assert message.recipient == "ana@example.org"
    summary = list_profiles(database)[0]
    assert summary.last_test_ok is True and summary.last_test_at is not None


def test_starttls_with_an_untrusted_certificate(
    snap_compare: Any, tmp_path: Path, server_context: ssl.SSLContext
) -> None:
    database = profile_database(tmp_path, port=STARTTLS, security="starttls")
    with SmtpServer(port=STARTTLS, security="starttls", certificate_context=server_context):
        assert snap_compare(
            smtp_console(database), terminal_size=SIZE, run_before=on_profile("ctrl+t")
        )
    assert list_profiles(database)[0].last_test_ok is False


def test_credentials_refused(snap_compare: Any, tmp_path: Path, env_password: None) -> None:
    database = profile_database(
        tmp_path, port=AUTH, username="billing", password_env="MSGRUN_TEST_SMTP_PASSWORD"
    )
    seen: list[str] = []

    async def run(pilot: Pilot[Any]) -> None:
        await on_profile("ctrl+t")(pilot)
        seen.append(steps_text(pilot.app))

    with SmtpServer(port=AUTH, users={"billing": SECRET}):
        assert snap_compare(smtp_console(database), terminal_size=SIZE, run_before=run)
    assert "535" in seen[0]
    assert SECRET not in seen[0]


def test_relay_denied(snap_compare: Any, tmp_path: Path) -> None:
    database = profile_database(tmp_path, port=RELAY)
    faults = Faults(rcpt={"ana@example.org": ["554 5.7.1 Relay access denied"]})
    with SmtpServer(port=RELAY, faults=faults):
        assert snap_compare(
            smtp_console(database),
            terminal_size=SIZE,
            run_before=on_profile("ctrl+n", to="ana@example.org"),
        )


def test_a_closed_port(snap_compare: Any, tmp_path: Path) -> None:
    database = profile_database(tmp_path, port=CLOSED)
    assert snap_compare(smtp_console(database), terminal_size=SIZE, run_before=on_profile("ctrl+t"))


def test_a_server_that_never_answers(snap_compare: Any, tmp_path: Path) -> None:
    database = profile_database(tmp_path, port=SILENT, timeout_seconds=0.5)
    with SmtpServer(port=SILENT, faults=Faults(banner_delay=30)):
        assert snap_compare(
            smtp_console(database), terminal_size=SIZE, run_before=on_profile("ctrl+t")
        )


async def test_a_fix_is_tried_before_it_is_saved_and_saved_only_on_request(
    tmp_path: Path,
) -> None:
    """The profile points at a closed port; the operator types the right one, tests, saves."""
    database = profile_database(tmp_path, port=CLOSED)
    with SmtpServer() as server:
        app = smtp_console(database)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("p")
            await settle(pilot)
            await pilot.press("enter")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, ProfileScreen)
            await pilot.press("tab")  # host → port
            port = screen.query_one("#field-port", Input)
            assert port.has_focus
            await pilot.press("ctrl+u", *str(server.port))
            await settle(pilot)
            assert port.value == str(server.port)
            facts = str(screen.query_one("#profile-facts", Static).render())
            assert "unsaved changes" in facts
            await pilot.press("ctrl+t")
            await settle(pilot)
            assert "Every step passed" in steps_text(app)
            assert "not recorded" in steps_text(app)
            # Tested, not saved: the database still has the closed port, and no test result.
            assert load_profile(database, "main").port == CLOSED
            assert list_profiles(database)[0].last_test_at is None
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert load_profile(database, "main").port == server.port
            assert "saved" in str(screen.query_one("#profile-facts", Static).render())


async def test_a_bad_edit_is_refused_and_leaving_asks_first(tmp_path: Path) -> None:
    database = profile_database(tmp_path, port=PLAIN)
    app = smtp_console(database)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await app.push_screen(ProfileScreen("main"))
        await settle(pilot)
        screen = app.screen
        screen.query_one("#field-host", Input).value = "bad host"
        screen.query_one("#field-port", Input).value = "70000"
        screen.query_one("#field-security", Select).value = "tls"
        await pilot.press("ctrl+s")
        await settle(pilot)
        notes = [n.message for n in app._notifications]
        assert any("host: 'bad host'" in n and "port: '70000'" in n for n in notes), notes
        stored = load_profile(database, "main")
        assert (stored.host, stored.port, stored.security) == ("127.0.0.1", PLAIN, "none")
        await pilot.press("escape")
        await settle(pilot)
        assert type(app.screen).__name__ == "Confirm"
        await pilot.press("n")
        await settle(pilot)
        assert app.screen is screen
        await pilot.press("escape", "y")
        await settle(pilot)
        assert isinstance(app.screen, ProfilesScreen) or type(app.screen).__name__ == "RunsScreen"


async def test_the_form_says_where_the_password_would_come_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = profile_database(
        tmp_path, port=AUTH, username="billing", password_env="MSGRUN_TEST_SMTP_PASSWORD"
    )
    monkeypatch.delenv("MSGRUN_TEST_SMTP_PASSWORD", raising=False)
    monkeypatch.delenv("MSGRUN_KEYRING", raising=False)

    def facts(app: Any) -> str:
        return str(app.screen.query_one("#profile-facts", Static).render())

    app = smtp_console(database)
    async with app.run_test(size=SIZE) as pilot:
        await on_profile()(pilot)
        assert (
            "no password here: the environment variable MSGRUN_TEST_SMTP_PASSWORD is not set"
            in facts(app)
        )
        monkeypatch.setenv("MSGRUN_TEST_SMTP_PASSWORD", SECRET)
        await pilot.press("escape")
        await on_profile()(pilot)
        assert "password from $MSGRUN_TEST_SMTP_PASSWORD" in facts(app)
        assert SECRET not in facts(app)


async def test_a_passed_test_no_longer_holds_once_the_form_changes(tmp_path: Path) -> None:
    database = profile_database(tmp_path, port=PLAIN)

    def facts(app: Any) -> str:
        return str(app.screen.query_one("#profile-facts", Static).render())

    with SmtpServer(port=PLAIN):
        app = smtp_console(database)
        async with app.run_test(size=SIZE) as pilot:
            await on_profile("ctrl+t")(pilot)
            assert "Every step passed" in steps_text(app)
            # Security none: nothing is encrypted, so no certificate is said to be verified.
            assert "no TLS" in facts(app) and "certificates verified" not in facts(app)
            app.screen.query_one("#field-to", Input).value = "ana@example.org"
            await settle(pilot)
            assert "Every step passed" in steps_text(app)  # the address is not a setting
            app.screen.query_one("#field-port", Input).value = "2526"
            await settle(pilot)
            assert "Every step passed" not in steps_text(app)
            assert "The form changed after the last test" in steps_text(app)
            app.screen.query_one("#field-security", Select).value = "starttls"
            await settle(pilot)
            assert "certificates verified" in facts(app) and "no TLS" not in facts(app)


async def test_the_os_keyring_is_asked_off_the_ui_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking the OS keyring may prompt to unlock it, or hang: the form's facts and a test
    ask it from a worker thread, never from the UI thread."""
    import keyring

    database = profile_database(
        tmp_path, port=AUTH, username="billing", password_env="MSGRUN_TEST_SMTP_PASSWORD"
    )
    monkeypatch.delenv("MSGRUN_TEST_SMTP_PASSWORD", raising=False)
    monkeypatch.setenv("MSGRUN_KEYRING", "1")
    on_ui_thread: list[bool] = []

    def get_password(service: str, account: str) -> str | None:
        on_ui_thread.append(threading.current_thread() is threading.main_thread())
        return SECRET if account == "MSGRUN_TEST_SMTP_PASSWORD" else None

    monkeypatch.setattr(keyring, "get_password", get_password)
    app = smtp_console(database)
    with SmtpServer(port=AUTH, users={"billing": SECRET}):
        async with app.run_test(size=SIZE) as pilot:
            await on_profile("ctrl+t")(pilot)
            facts = str(app.screen.query_one("#profile-facts", Static).render())
            steps = steps_text(app)
    assert "password from the OS keyring (MSGRUN_TEST_SMTP_PASSWORD)" in facts
    assert "Every step passed" in steps, steps
    assert on_ui_thread and not any(on_ui_thread)
