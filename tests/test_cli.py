"""The msgrun command line: output, exit codes, and no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.storage import open_database
from core.storage.database import SCHEMA_REVISION
from tests.conftest import BLUE_LAGOON, MINIMAL, STORY_AT
from tests.db_snapshot import snapshot
from tui import cli

Run = tuple[int, str, str]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def msgrun(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, document: Any, name: str = "in.json") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def test_import_then_plan_and_why(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    code, out, err = msgrun(capsys, "import", str(BLUE_LAGOON), "--db", db_url)
    assert (code, err) == (0, "")
    assert "imported: the organisation, 1 SMTP profile, 3 billing methods, 18 customers" in out

    code, out, _ = msgrun(capsys, "plan", "invoice-email", "--at", STORY_AT, "--db", db_url)
    assert code == 0
    assert "21 candidates: 4 included, 1 deferred, 16 excluded" in out
    assert "suppressed" in out and "fix: " in out

    code, out, _ = msgrun(capsys, "why", "C003", "--at", STORY_AT, "--db", db_url)
    assert code == 0
    assert "SUPPRESSED: spam_complaint since 2026-09-01" in out
    assert "invoice-email (Invoice email)" in out and "heater-offer" in out


def test_plan_json_is_the_interchange_object(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    msgrun(capsys, "import", str(BLUE_LAGOON), "--db", db_url)
    code, out, _ = msgrun(
        capsys, "plan", "invoice-email", "--at", STORY_AT, "--json", "--db", db_url
    )
    assert code == 0
    plan = json.loads(out)
    assert plan["definition"] == "invoice-email"
    assert plan["at"] == "2026-11-22T23:00:00+00:00"
    assert plan["summary"]["candidates"] == len(plan["candidates"]) == 21
    deferred = [c for c in plan["candidates"] if c["decision"] == "deferred"]
    assert deferred == [
        {
            "customer": "C014",
            "contact": "C014-1",
            "address": "noah.smith@example.co.uk",
            "document": "INV-1015",
            "label": "2026-0055",
            "decision": "deferred",
            "reasons": [],
            "send_after": "2026-11-23T09:00:00+00:00",
        }
    ]


def test_why_json_includes_the_fix(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    msgrun(capsys, "import", str(BLUE_LAGOON), "--db", db_url)
    code, out, _ = msgrun(
        capsys,
        "why",
        "C009",
        "--definition",
        "invoice-email",
        "--at",
        STORY_AT,
        "--json",
        "--db",
        db_url,
    )
    assert code == 0
    report = json.loads(out)
    assert report["customer"]["id"] == "C009"
    (definition,) = report["definitions"]
    (candidate,) = definition["candidates"]
    assert candidate["label"] == "Concept"
    assert candidate["reasons"] == [
        {
            "code": "document_status_not_targeted",
            "detail": "document INV-1009 is concept; the definition targets approved, overdue",
            "fix": "Approve the document, or add its status to the definition.",
        }
    ]


def test_plan_json_is_byte_identical_across_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    base = [sys.executable, "-m", "tui.cli", "--db", url]
    subprocess.run([*base, "import", str(BLUE_LAGOON)], check=True, capture_output=True)
    runs = [
        subprocess.run(
            [*base, "plan", "invoice-email", "--at", STORY_AT, "--json"],
            check=True,
            capture_output=True,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0].startswith(b"{")


def test_a_bad_file_lists_every_problem_exits_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    msgrun(capsys, "import", str(BLUE_LAGOON), "--db", db_url)
    before = snapshot(open_database(db_url))
    bad = json.loads(json.dumps(MINIMAL))
    bad["organisation"]["name"] = "Blue Lagoon Pools"
    bad["customers"][0]["contacts"][0]["addresses"][0].pop("key")
    bad["documents"][0]["status"] = "draft"
    code, out, err = msgrun(capsys, "import", write(tmp_path, bad), "--db", db_url)
    assert (code, out) == (2, "")
    assert "2 problems; nothing was imported" in err
    assert "customers[0].contacts[0].addresses[0].key: required" in err
    assert "documents[0].status: 'draft' is not one of" in err
    assert snapshot(open_database(db_url)) == before


def test_import_check_writes_nothing(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    code, out, _ = msgrun(capsys, "import", str(BLUE_LAGOON), "--check", "--db", db_url)
    assert code == 0 and "is valid" in out
    assert all(
        rows == []
        for name, rows in snapshot(open_database(db_url)).items()
        if name not in ("alembic_version", "msgrun_secret")  # the database's own
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "/no/such/file.json"], "/no/such/file.json: no such file"),
        (
            ["plan", "nope", "--at", STORY_AT],
            "unknown definition 'nope' (definitions: heater-offer",
        ),
        (["plan", "invoice-email", "--at", "tomorrow"], "--at: 'tomorrow' is not an ISO 8601"),
        (["plan", "invoice-email", "--at", "2026-11-23T10:00"], "has no UTC offset"),
        (["why", "C999"], "unknown customer 'C999'"),
        (["why", "C001", "--definition", "nope"], "unknown definition 'nope'"),
        (["plan"], "the following arguments are required: definition"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_usage_exits_2_with_a_message(
    capsys: pytest.CaptureFixture[str], db_url: str, args: list[str], message: str
) -> None:
    msgrun(capsys, "import", str(BLUE_LAGOON), "--db", db_url)
    code, out, err = (
        msgrun(capsys, *args, "--db", db_url) if args[0] != "frobnicate" else msgrun(capsys, *args)
    )
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err


def test_a_bad_database_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = msgrun(capsys, "plan", "x", "--db", "mysql://u@h/d")
    assert code == 2 and "unsupported database 'mysql'" in err


def test_an_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = msgrun(capsys, "plan", "x", "--db", "postgresql://postgres@127.0.0.1:1/x")
    assert code == 1 and "cannot open postgresql+psycopg://postgres@127.0.0.1:1/x" in err


def test_an_empty_database_says_to_import_first(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    assert msgrun(capsys, "db", "upgrade", "--db", db_url)[0] == 0
    code, _, err = msgrun(capsys, "plan", "invoice-email", "--db", db_url)
    assert code == 2 and "import an interchange file first" in err


def test_msgrun_db_environment_variable(
    capsys: pytest.CaptureFixture[str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSGRUN_DB", db_url)
    assert msgrun(capsys, "import", str(BLUE_LAGOON))[0] == 0
    assert msgrun(capsys, "plan", "job-sheet", "--at", STORY_AT)[0] == 0


def test_db_upgrade(capsys: pytest.CaptureFixture[str], db_url: str) -> None:

    code, out, _ = msgrun(capsys, "db", "upgrade", "--db", db_url)
    assert code == 0 and f"upgraded from empty to {SCHEMA_REVISION} (newest)" in out
    code, out, _ = msgrun(capsys, "db", "upgrade", "--db", db_url)
    assert code == 0 and f"already at {SCHEMA_REVISION}" in out


def test_db_upgrade_from_the_first_schema_keeps_the_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A database made by the first release (0001) is brought to the newest with its runs."""
    from alembic import command

    from core.storage import open_database
    from core.storage.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = open_database(url, migrate=False)
    config = alembic_config(old)
    with old.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    old.dispose()
    code, out, _ = msgrun(capsys, "db", "upgrade", "--db", url)
    assert code == 0 and f"upgraded from 0001 to {SCHEMA_REVISION}" in out
    assert msgrun(capsys, "import", str(BLUE_LAGOON), "--db", url)[0] == 0
    code, out, _ = msgrun(capsys, "run", "start", "job-sheet", "--detach", "--db", url)
    assert code == 0 and out.strip() == "1"


def test_an_internal_error_shows_no_traceback(
    capsys: pytest.CaptureFixture[str], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("tui.commands.planning.stream_plan_text", explode)
    msgrun(capsys, "import", str(BLUE_LAGOON), "--db", db_url)
    code, out, err = msgrun(capsys, "plan", "invoice-email", "--db", db_url)
    assert code == 1
    assert "internal error: RuntimeError: disk on fire" in err
    assert "Traceback" not in out + err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for command in ("import", "plan", "why", "run", "worker", "smtp", "console", "db"):
        assert command in out


def test_no_arguments_opens_the_console(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    opened: list[object] = []
    monkeypatch.setattr(
        "tui.commands.console_cmd.run_console", lambda args: opened.append(args) or 0
    )
    monkeypatch.setenv("MSGRUN_DB", db_url)
    assert msgrun(capsys)[0] == 0
    assert len(opened) == 1


def test_the_installed_command_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("msgrun")
    result = subprocess.run(
        [str(exe), "--db", f"sqlite:///{tmp_path / 'y.db'}", "plan", "x"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("msgrun: ") and "Traceback" not in result.stderr


def test_an_error_in_one_line_names_the_database_s_own_words() -> None:
    from sqlalchemy.exc import OperationalError

    from core.storage.database import error_words

    error = OperationalError("SELECT 1", {}, Exception("server closed the connection\nhint"))
    assert error_words(error) == "server closed the connection"
    assert error_words(ValueError("bad\nmore")) == "bad"
    assert error_words(ValueError()) == "ValueError"


def test_why_finds_a_customer_by_id_name_or_address_in_any_case(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    msgrun(capsys, "import", str(BLUE_LAGOON), "--db", db_url)
    for query in ("c015", "Olivia Brown", "OLIVIA.BROWN@example.org"):
        code, out, err = msgrun(capsys, "why", query, "--at", STORY_AT, "--db", db_url)
        assert (code, err) == (0, ""), query
        assert out.startswith("Customer C015 Olivia Brown")
    # Several match: each is listed to pick from, and nothing is explained.
    code, out, err = msgrun(capsys, "why", "example.org", "--db", db_url)
    assert code == 2 and out == ""
    assert "customers match 'example.org'; name one by its id:" in err
    assert "  C001  Ana Souza" in err
    # None matches: the nearest ids are suggested.
    code, out, err = msgrun(capsys, "why", "C99", "--db", db_url)
    assert code == 2 and out == ""
    assert "unknown customer 'C99'" in err and "nearest ids: C009" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("at", "words"),
    [
        ("2026-11-23", "e.g. 2026-11-23T00:00:00+00:00 or 2026-11-23T00:00:00Z"),
        ("9999-12-31T23:59:59+00:00", "out of range"),
        ("9999-12-31T23:59:59-12:00", "out of range"),
    ],
)
def test_an_at_without_offset_or_out_of_range_is_refused_with_a_hint_that_works(
    capsys: pytest.CaptureFixture[str], db_url: str, at: str, words: str
) -> None:
    assert msgrun(capsys, "import", str(BLUE_LAGOON), "--db", db_url)[0] == 0
    code, out, err = msgrun(capsys, "plan", "invoice-email", "--at", at, "--db", db_url)
    assert (code, out) == (2, "") and words in err and "internal error" not in err
    if "e.g." in words:  # the suggested form is accepted
        suggested = words.split("e.g. ")[1].split(" or ")[0]
        assert msgrun(capsys, "plan", "invoice-email", "--at", suggested, "--db", db_url)[0] == 0


def test_json_nested_too_deeply_is_refused_not_a_crash(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "[" * 100_000)
    code, _, err = msgrun(capsys, "import", path, "--db", db_url)
    assert code == 2 and "nested too deeply" in err and "internal error" not in err


def test_demo_rate_must_be_above_zero_and_nothing_is_made(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "demo"
    code, _, err = msgrun(capsys, "demo", "--rate", "0", "--folder", str(folder), "--no-console")
    assert code == 2 and "must be more than 0" in err
    assert not folder.exists()


def test_a_sqlite_library_too_old_for_msgrun_is_said_before_anything_is_done(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older Linux's Python may carry SQLite 3.31: without RETURNING and UPDATE … FROM
    a run would fail half-way; msgrun says so at once, and creates nothing."""
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    target = tmp_path / "new.db"
    code, _, err = msgrun(capsys, "import", write(tmp_path, MINIMAL), "--db", f"sqlite:///{target}")
    assert code == 1
    assert "SQLite library is 3.31.1; msgrun needs 3.35.0 or newer" in err
    assert "Traceback" not in err
    assert not target.exists()


def test_the_commands_core_suggests_name_the_database_the_command_was_given(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert msgrun(capsys, "db", "upgrade", "--db", url)[0] == 0
    code, out, err = msgrun(capsys, "plan", "invoice-email", "--db", url)
    assert code == 2 and out == ""
    assert f"import an interchange file first (msgrun import FILE --db {url})" in err
