"""Settings from the environment (core/settings.py): a value outside what msgrun promises
is refused (exit 2, nothing done), never quietly replaced by another; every MSGRUN_*
variable is read there and nowhere else, and the manual lists each."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from core import settings
from core.settings import LEASE_SECONDS, DnsServer, SettingError
from core.storage import Database
from tests.conftest import load_ok, url_of
from tests.db_snapshot import snapshot
from tests.delivery_support import document
from tui import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("", LEASE_SECONDS),
        (" ", LEASE_SECONDS),
        ("1", 1.0),
        ("15", 15.0),
        ("7.5", 7.5),
        (" 4 ", 4.0),
    ],
)
def test_the_lease_is_a_number_of_seconds_from_1_to_15(raw: str, seconds: float) -> None:
    assert settings.lease_seconds({"MSGRUN_LEASE_SECONDS": raw}) == seconds
    assert settings.lease_seconds({}) == LEASE_SECONDS


@pytest.mark.parametrize("raw", ["99", "0", "0.5", "15.1", "-3", "nan", "inf", "twelve"])
def test_a_lease_outside_1_to_15_seconds_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(
        SettingError, match=f"MSGRUN_LEASE_SECONDS='{raw}' is not a number of seconds from 1 to 15"
    ):
        settings.lease_seconds({"MSGRUN_LEASE_SECONDS": raw})


def test_the_sender_processes_are_a_number_or_unset() -> None:
    assert settings.sender_processes({}) is None
    assert settings.sender_processes({"MSGRUN_SENDER_PROCESSES": " "}) is None
    assert settings.sender_processes({"MSGRUN_SENDER_PROCESSES": "0"}) == 0
    assert settings.sender_processes({"MSGRUN_SENDER_PROCESSES": "2"}) == 2
    for bad in ("two", "-1", "1.5"):
        with pytest.raises(SettingError, match=f"MSGRUN_SENDER_PROCESSES='{bad}' is not a number"):
            settings.sender_processes({"MSGRUN_SENDER_PROCESSES": bad})


@pytest.mark.parametrize(
    ("value", "expected", "written"),
    [
        ("", None, None),
        ("127.0.0.1", ("127.0.0.1", 53), "127.0.0.1"),
        ("127.0.0.1:5353", ("127.0.0.1", 5353), "127.0.0.1:5353"),
        ("::1", ("::1", 53), "::1"),
        ("[::1]:5353", ("::1", 5353), "[::1]:5353"),
    ],
)
def test_the_dns_server_is_an_address_and_a_port(
    value: str, expected: tuple[str, int] | None, written: str | None
) -> None:
    server = settings.dns_server({"MSGRUN_DNS_SERVER": value})
    assert server == expected
    assert (server.describe() if server else None) == written


@pytest.mark.parametrize(
    ("value", "wrong"),
    [
        ("nonsense", "'nonsense' is not an IP address"),
        ("dns.example:53", "'dns.example' is not an IP address"),
        ("127.0.0.1:0", "'0' is not a port (1-65535)"),
        ("127.0.0.1:x", "'x' is not a port (1-65535)"),
        ("[::1]x", "'?' is not a port (1-65535)"),
    ],
)
def test_a_dns_server_that_is_not_an_address_and_port_is_refused(value: str, wrong: str) -> None:
    with pytest.raises(SettingError, match=re.escape(f"MSGRUN_DNS_SERVER={value!r}")) as refused:
        settings.dns_server({"MSGRUN_DNS_SERVER": value})
    assert wrong in str(refused.value) and "give a DNS server's IP address" in str(refused.value)
    assert DnsServer("10.0.0.53", 5353).describe() == "10.0.0.53:5353"


@pytest.mark.parametrize(
    ("read", "variable"),
    [(settings.keyring_enabled, "MSGRUN_KEYRING"), (settings.debug, "MSGRUN_DEBUG")],
)
def test_a_switch_is_on_or_off_and_nothing_else(
    read: Callable[[Mapping[str, str]], bool], variable: str
) -> None:
    assert read({}) is False
    for on in ("1", "yes", "TRUE", " on "):
        assert read({variable: on}) is True
    for off in ("", "0", "no", "false", "Off"):
        assert read({variable: off}) is False
    with pytest.raises(SettingError, match=f"{variable}='maybe' is not on or off: give 1, yes"):
        read({variable: "maybe"})


def test_the_database_url_is_a_sqlite_or_postgresql_url_or_unset() -> None:
    assert settings.database_url({}) is None
    assert settings.database_url({"MSGRUN_DB": " "}) is None
    for url in ("sqlite:///a.db", "postgresql+psycopg://u@h:5432/d", "postgresql://u@h/d"):
        assert settings.database_url({"MSGRUN_DB": f" {url} "}) == url
    for bad in ("msgrun.db", "mysql://u@h/d", "sqlite:/a.db"):
        with pytest.raises(SettingError, match=f"MSGRUN_DB='{bad}' is not a database URL"):
            settings.database_url({"MSGRUN_DB": bad})


def test_the_bounce_sources_are_separated_by_spaces_and_never_standard_input() -> None:
    assert settings.bounce_sources({}) == []
    assert settings.bounce_sources({"MSGRUN_BOUNCE_SOURCES": " a  imaps://u@h/INBOX "}) == [
        "a",
        "imaps://u@h/INBOX",
    ]
    with pytest.raises(SettingError, match=r"MSGRUN_BOUNCE_SOURCES='a -' names - \(standard"):
        settings.bounce_sources({"MSGRUN_BOUNCE_SOURCES": "a -"})


def test_the_imap_ca_file_is_a_file_or_unset(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert settings.imap_cafile({}) is None
    assert settings.imap_cafile({"MSGRUN_IMAP_CAFILE": str(pem)}) == pem
    for bad in (tmp_path / "none.pem", tmp_path):
        with pytest.raises(SettingError, match=f"MSGRUN_IMAP_CAFILE='{bad}' is not a file"):
            settings.imap_cafile({"MSGRUN_IMAP_CAFILE": str(bad)})


def test_the_parent_to_die_with_is_a_process_id_or_unset() -> None:
    assert settings.die_with({}) is None
    assert settings.die_with({"MSGRUN_DIE_WITH": "4242"}) == 4242
    for bad in ("0", "-1", "me"):
        with pytest.raises(SettingError, match=f"MSGRUN_DIE_WITH='{bad}' is not a process id"):
            settings.die_with({"MSGRUN_DIE_WITH": bad})


# Each variable with a bad value, and what the refusal says.
REFUSED = [
    ("MSGRUN_DB", "msgrun.db", "MSGRUN_DB='msgrun.db' is not a database URL"),
    ("MSGRUN_KEYRING", "maybe", "MSGRUN_KEYRING='maybe' is not on or off"),
    ("MSGRUN_DEBUG", "maybe", "MSGRUN_DEBUG='maybe' is not on or off"),
    ("MSGRUN_SENDER_PROCESSES", "lots", "MSGRUN_SENDER_PROCESSES='lots' is not a number"),
    (
        "MSGRUN_LEASE_SECONDS",
        "99",
        "MSGRUN_LEASE_SECONDS='99' is not a number of seconds from 1 to 15",
    ),
    ("MSGRUN_DNS_SERVER", "nonsense", "MSGRUN_DNS_SERVER='nonsense' is not a DNS server"),
    ("MSGRUN_BOUNCE_SOURCES", "-", "MSGRUN_BOUNCE_SOURCES='-' names - (standard input)"),
    ("MSGRUN_IMAP_CAFILE", "/no/such.pem", "MSGRUN_IMAP_CAFILE='/no/such.pem' is not a file"),
    ("MSGRUN_DIE_WITH", "me", "MSGRUN_DIE_WITH='me' is not a process id"),
]


def test_every_setting_has_a_refusal_here() -> None:
    assert {variable for variable, _, _ in REFUSED} == {s.variable for s in settings.SETTINGS}


def test_check_reads_every_setting() -> None:
    settings.check({})
    for variable, value, message in REFUSED:
        with pytest.raises(SettingError) as refused:
            settings.check({variable: value})
        assert str(refused.value).startswith(message)


@pytest.mark.parametrize(("variable", "value", "message"), REFUSED)
@pytest.mark.parametrize(
    "command",
    [["run", "start", "inv", "--detach"], ["run", "restart", "1"], ["run", "list"], []],
    ids=["run start", "run restart", "run list", "the console"],
)
def test_a_bad_setting_is_refused_by_every_command_exit_2_nothing_done(
    db: Database,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    variable: str,
    value: str,
    message: str,
) -> None:
    load_ok(db, document(2, 2525))
    before = snapshot(db)
    monkeypatch.setenv(variable, value)
    code = cli.main([*command, "--db", url_of(db)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith(f"msgrun: {message}")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(db) == before


def _msgrun_literals(path: Path) -> list[tuple[int, str]]:
    """The string constants in ``path`` that are a whole MSGRUN_* variable name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"MSGRUN_[A-Z0-9_]+", node.value)
        ):
            found.append((node.lineno, node.value))
    return found


def test_no_module_but_the_settings_names_a_msgrun_variable_to_read_it() -> None:
    """Reading a MSGRUN_* variable takes its name: only core/settings.py holds one (the
    tests' own MSGRUN_TEST_* aside). Messages and help may mention one inside a text."""
    strays = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for package in ("core", "tui", "fixtures")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "core" / "settings.py"
        for line, name in _msgrun_literals(path)
        if not name.startswith("MSGRUN_TEST_")
    ]
    assert strays == []
    assert _msgrun_literals(ROOT / "core" / "settings.py"), "the scan finds the names"


def test_the_manual_lists_every_variable_with_its_default_and_allowed_values() -> None:
    manual = (ROOT / "docs" / "configuration.md").read_text()
    sections = dict(
        re.findall(r"^### (MSGRUN_[A-Z_]+)\n(.*?)(?=^##)", manual, re.MULTILINE | re.DOTALL)
    )
    expected = {s.variable for s in settings.SETTINGS} | {settings.IMAP_PASSWORD}
    assert set(sections) == expected
    for variable in expected - {settings.IMAP_PASSWORD, settings.DIE_WITH}:
        assert "Unset" in sections[variable], f"{variable}: no default in the manual"
        assert "refused" in sections[variable], f"{variable}: no allowed values in the manual"
