"""SMTP passwords from the environment or, when configured, the OS keyring; never shown.

The keyring is a file-backed stand-in (fixtures/file_keyring.py) selected the
way the keyring library selects any backend, so that ``msgrun`` processes
and the test share it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from core.clock import parse_instant
from core.passwords import find_password, store_password
from core.planner.plan import make_plan
from core.storage import Database
from fixtures.file_keyring import FILE_ENV, FileKeyring
from fixtures.smtp_servers import SmtpServer
from tests.conftest import load_ok
from tests.delivery_support import AT, deliver_now, document, new_run

SECRET = "kr-s3cret-Pa55"
MSGRUN = str(Path(sys.executable).with_name("msgrun"))
BACKEND = "fixtures.file_keyring.FileKeyring"


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process's keyring is the file stand-in, empty."""
    path = tmp_path / "keyring.json"
    monkeypatch.setenv(FILE_ENV, str(path))
    before: KeyringBackend = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    try:
        yield path
    finally:
        keyring.set_keyring(before)


def test_the_environment_comes_first_and_the_keyring_only_when_configured(
    file_keyring: Path,
) -> None:
    store_password("PW", SECRET)
    assert find_password("PW", {"PW": "from-env"}) == "from-env"
    assert find_password("PW", {}) is None, "the keyring is not asked unless configured"
    assert find_password("PW", {"MSGRUN_KEYRING": "1"}) == SECRET
    assert find_password("OTHER", {"MSGRUN_KEYRING": "1"}) is None


def test_a_keyring_that_fails_is_as_if_it_held_nothing(
    file_keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(service: str, username: str) -> str | None:
        raise RuntimeError("the keyring is locked")

    monkeypatch.setattr(keyring, "get_password", locked)
    assert find_password("PW", {"MSGRUN_KEYRING": "1"}) is None


def test_a_run_logs_in_with_the_password_from_the_keyring(db: Database, file_keyring: Path) -> None:
    store_password("PW", SECRET)
    with SmtpServer(users={"billing": SECRET}) as server:
        run_id = new_run(db, document(3, server.port, username="billing", password_env="PW"))
        unconfigured = deliver_now(db, run_id, environ={})
        assert unconfigured.state == "failed"
        assert unconfigured.error is not None and "msgrun smtp password main" in unconfigured.error
        run_id = new_run(db, document(3, server.port, username="billing", password_env="PW"))
        assert deliver_now(db, run_id, environ={"MSGRUN_KEYRING": "1"}).state == "completed"
    assert len(server.messages()) == 3


def test_the_plan_warns_only_when_neither_holds_the_password(
    db: Database, file_keyring: Path
) -> None:
    load_ok(db, document(1, 2525, username="billing", password_env="PW"))

    def warned(environ: dict[str, str]) -> list[str]:
        plan = make_plan(db, "inv", parse_instant(AT), environ=environ)
        return [w for w in plan.warnings if "PW" in w]

    configured = {"MSGRUN_KEYRING": "1"}
    assert warned(configured) == [
        "SMTP profile main: the environment variable PW that holds its password is not set "
        "here and the OS keyring has none for it"
    ]
    store_password("PW", SECRET)
    assert warned(configured) == []
    assert len(warned({})) == 1


def test_smtp_password_stores_it_and_smtp_test_logs_in_with_it(
    db: Database, tmp_path: Path
) -> None:
    url = db.describe() if db.dialect == "sqlite" else db.url.render_as_string(hide_password=False)
    kept = tmp_path / "keyring.json"
    env = {"PATH": "/usr/bin:/bin", "PYTHON_KEYRING_BACKEND": BACKEND, FILE_ENV: str(kept)}

    def msgrun(*args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MSGRUN, "--db", url, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=60,
        )

    with SmtpServer(users={"billing": SECRET}) as server:
        load_ok(db, document(1, server.port, username="billing", password_env="PW"))
        stored = msgrun("smtp", "password", "main", stdin=SECRET + "\n")
        assert stored.returncode == 0, stored.stderr
        assert "msgrun/PW" in stored.stdout and "MSGRUN_KEYRING=1" in stored.stdout
        assert json.loads(kept.read_text()) == {"msgrun/PW": SECRET}
        passed = msgrun("smtp", "test", "main", "--transcript", MSGRUN_KEYRING="1")
        assert passed.returncode == 0 and "every step passed" in passed.stdout, passed.stdout
        unconfigured = msgrun("smtp", "test", "main")
        assert unconfigured.returncode == 1 and "failed at auth" in unconfigured.stdout
        assert "msgrun smtp password main" in unconfigured.stdout
        for result in (stored, passed, unconfigured):
            assert SECRET not in result.stdout + result.stderr


def test_smtp_password_bad_usage_and_no_keyring(db: Database) -> None:
    url = db.describe() if db.dialect == "sqlite" else db.url.render_as_string(hide_password=False)
    doc = document(1, 2525, username="billing", password_env="PW")
    doc["smtp_profiles"].append({**doc["smtp_profiles"][0], "id": "open"})
    del doc["smtp_profiles"][1]["username"], doc["smtp_profiles"][1]["password_env"]
    load_ok(db, doc)

    def msgrun(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MSGRUN, "--db", url, "smtp", "password", *args],
            input=stdin,
            capture_output=True,
            text=True,
            # No keyring backend at all, as on a server without a desktop session.
            env={
                "PATH": "/usr/bin:/bin",
                "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            },
            timeout=60,
        )

    for args, stdin, code, message in (
        (["nope"], SECRET, 2, "unknown SMTP profile 'nope'"),
        (["open"], SECRET, 2, "has no username: it sends without AUTH"),
        (["main"], "", 2, "no password given: nothing was stored"),
        (["main"], SECRET + "\n", 1, "no OS keyring can store it here"),
    ):
        result = msgrun(*args, stdin=stdin)
        assert result.returncode == code and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and SECRET not in result.stderr
