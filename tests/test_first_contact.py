"""What a new user meets first (issue 13): the database they point at, the files
they have, reserved domains, the command line, the console without a terminal,
and the demo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from core.addresses import address_problem
from core.run_info import get_run
from core.storage import Database, open_database
from core.storage.models import Address, table_of
from tests.conftest import BLUE_LAGOON, MINIMAL, STORY_AT, SUNNY_SIDE, load, load_ok
from tests.db_snapshot import snapshot
from tests.nobody import msgrun_nobody_can_run
from tests.terminal import Terminal
from tui import cli
from tui.next_steps import next_step_lines

pytestmark = pytest.mark.timeout(180)
MSGRUN = str(Path(sys.executable).with_name("msgrun"))
Run = tuple[int, str, str]
RESERVED = [
    "example.test",
    "hidden.test",
    "foo.example",
    "mail.invalid",
    "host.localhost",
    "printer.local",
]


def msgrun(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'first.db'}"


def minimal() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(MINIMAL))
    return data


# -- 3. reserved domains: syntax only -------------------------------------------------


@pytest.mark.parametrize("domain", RESERVED)
def test_a_domain_reserved_for_testing_or_local_use_is_valid(domain: str) -> None:
    assert address_problem(f"alice@{domain}") is None


@pytest.mark.parametrize(
    "address",
    [
        "ana@gmailcom",
        "ana@localhost",
        "ana@@example.org",
        "ana",
        "a" * 65 + "@example.org",  # RFC 5321: 64 at most
        '"ana"@example.org',  # the mailbox of ana@example.org, spelled otherwise
        '"a <b>"@example.org',  # what no header can carry
    ],
)
def test_syntax_still_decides(address: str) -> None:
    assert address_problem(address) is not None


def test_a_local_part_may_be_64_characters() -> None:
    assert address_problem("a" * 64 + "@example.org") is None


def test_the_migration_decides_long_local_parts_again(db: Database) -> None:
    """A database of the revision before 0016 took a local part over 64 characters; 0016
    decides such addresses again."""
    long, longest = "a" * 65 + "@example.org", "a" * 64 + "@example.org"
    document = minimal()
    document["customers"][0]["contacts"][0]["addresses"] = [
        {"address": long, "key": "billing"},
        {"address": longest, "key": "billing"},
        {"address": "ana@example.org", "key": "billing"},
    ]
    load_ok(db, document)
    address = table_of(Address)
    with db.connect() as connection:
        connection.execute(update(address).where(address.c.address == long).values(problem=None))
    verdicts, revision = _migrated(db, "0015", "0016")
    assert revision == "0016"
    assert verdicts[longest] is None and verdicts["ana@example.org"] is None
    assert verdicts[long] == address_problem(long) is not None


def _migrated(db: Database, stamp: str, to: str) -> tuple[dict[str, str | None], str]:
    """The database recorded as revision ``stamp`` (as an older msgrun left it), then
    migrated to ``to``: every address's verdict, and the revision it is at."""
    from alembic import command

    from core.storage.migrate import alembic_config

    address = table_of(Address)
    config = alembic_config(db)
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.stamp(config, stamp)
        command.upgrade(config, to)
    again = open_database(db.url.render_as_string(hide_password=False), migrate=False)
    try:
        with again.connect() as connection:
            verdicts = dict(connection.execute(select(address.c.address, address.c.problem)).all())
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        again.dispose()
        # The schema is the newest's all along: say so again, for the tests that follow
        # on this database (PostgreSQL's is shared by the whole session).
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.stamp(config, "head")
    return verdicts, str(revision)


@pytest.mark.parametrize("domain", RESERVED)
def test_a_from_address_at_a_reserved_domain_imports(db: Database, domain: str) -> None:
    document = minimal()
    document["smtp_profiles"][0]["from_address"] = f"billing@{domain}"
    document["customers"][0]["contacts"][0]["addresses"][0]["address"] = f"alice@{domain}"
    load_ok(db, document)
    with db.session() as session:
        assert session.scalars(select(Address.problem)).one() is None


def test_a_from_address_without_a_two_label_domain_is_refused(db: Database) -> None:
    document = minimal()
    document["smtp_profiles"][0]["from_address"] = "billing@gmailcom"
    problems = [str(p) for p in load(db, document).problems]
    assert len(problems) == 1
    assert problems[0].startswith(
        "smtp_profiles[0].from_address: 'billing@gmailcom' is not a valid email address"
    )


def test_a_recipient_at_example_test_is_planned_not_excluded(db: Database) -> None:
    document = minimal()
    document["customers"][0]["contacts"][0]["addresses"][0]["address"] = "alice@example.test"
    load_ok(db, document)
    with db.session() as session:
        assert session.scalars(select(Address.problem)).one() is None


def test_the_migration_decides_stored_verdicts_again(db: Database) -> None:
    """A database of the revision before 0006 holds the old verdicts; 0006 decides them again."""
    document = minimal()
    contact = document["customers"][0]["contacts"][0]
    contact["addresses"] = [
        {"address": "alice@example.test", "key": "billing"},
        {"address": "ana@gmailcom", "key": "billing"},
        {"address": "ana@example.org", "key": "billing"},
    ]
    load_ok(db, document)
    address = table_of(Address)
    old = (
        "The part after the @-sign is a special-use or reserved name that cannot be used "
        "with email."
    )
    with db.connect() as connection:
        connection.execute(
            update(address).where(address.c.address == "alice@example.test").values(problem=old)
        )
    verdicts, revision = _migrated(db, "0005", "0006")
    assert revision == "0006"
    assert verdicts["alice@example.test"] is None
    assert verdicts["ana@example.org"] is None
    assert verdicts["ana@gmailcom"] == address_problem("ana@gmailcom") is not None


# -- 7. one organisation per database ---------------------------------------------------


def test_another_organisation_is_refused_naming_both(
    capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    assert msgrun(capsys, "import", str(BLUE_LAGOON), "--db", db_url)[0] == 0
    before = snapshot(open_database(db_url))
    code, out, err = msgrun(capsys, "import", str(SUNNY_SIDE), "--db", db_url)
    assert (code, out) == (2, "")
    assert "nothing was imported" in err
    assert "'Sunny Side School Photos'" in err and "'Blue Lagoon Pools'" in err
    assert "--replace-organisation" in err
    assert snapshot(open_database(db_url)) == before

    code, out, _ = msgrun(
        capsys, "import", str(SUNNY_SIDE), "--replace-organisation", "--db", db_url
    )
    assert code == 0 and "imported" in out


def test_the_same_organisation_imports_again(db: Database) -> None:
    load_ok(db, minimal())
    document = minimal()
    document["customers"][0]["name"] = "Ana Souza"
    load_ok(db, document)


# -- 8. the files people have -------------------------------------------------------------


def test_a_file_with_a_byte_order_mark_imports(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + BLUE_LAGOON.read_bytes())
    code, out, err = msgrun(capsys, "import", str(path), "--db", db_url)
    assert (code, err) == (0, "") and "imported" in out


@pytest.mark.parametrize("content", [b"", b"  \n\n", b"\xef\xbb\xbf"])
def test_an_empty_file_says_so(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(content)
    code, _, err = msgrun(capsys, "import", str(path), "--db", db_url)
    assert code == 2
    assert f"{path}: 1 problem; nothing was imported\n  the file is empty" in err


def test_a_refused_import_leaves_no_new_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert msgrun(capsys, "import", str(path), "--db", url)[0] == 2
    assert msgrun(capsys, "import", str(BLUE_LAGOON), "--check", "--db", url)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.json"]


def test_import_reads_standard_input(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stdin.db'}"
    result = subprocess.run(
        [MSGRUN, "--db", url, "import", "-"],
        input=BLUE_LAGOON.read_bytes(),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("stdin imported: the organisation")
    bad = subprocess.run(
        [MSGRUN, "--db", url, "import", "-"], input=b"{", capture_output=True, timeout=120
    )
    assert bad.returncode == 2 and b"stdin: 1 problem; nothing was imported" in bad.stderr


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\u202e", "U+202E"),
        ("\n", "U+000A"),
        ("\t", "U+0009"),
        ("\x1b", "U+001B"),
        ("\u2028", "U+2028"),
    ],
)
def test_control_characters_in_displayed_text_are_refused_with_their_path(
    db: Database, char: str, shown: str
) -> None:
    document = minimal()
    document["customers"][0]["name"] = f"Ana{char}Souza"
    document["customers"][0]["contacts"][0]["name"] = f"Ana{char}"
    document["organisation"]["name"] = f"Test{char}Pools"
    document["definitions"][0]["template"]["subject"] = f"Invoice{char}"
    problems = [str(p) for p in load(db, document).problems]
    assert problems == [
        f"organisation.name: control character {shown} not allowed",
        f"customers[0].name: control character {shown} not allowed",
        f"customers[0].contacts[0].name: control character {shown} not allowed",
        f"definitions[0].template.subject: control character {shown} not allowed",
    ]


def test_a_template_body_may_hold_newlines_and_tabs_and_joiners(db: Database) -> None:
    document = minimal()
    document["definitions"][0]["template"]["text"] = "Dear {{ contact.name }},\n\n\tthanks"
    document["customers"][0]["name"] = "Family 👩\u200d👩\u200d👧 Ana"
    load_ok(db, document)
    document["definitions"][0]["template"]["text"] = "Dear \u202e"
    problems = [str(p) for p in load(db, document).problems]
    assert problems == ["definitions[0].template.text: control character U+202E not allowed"]


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\u202e", "U+202E"),
        ("\x00", "U+0000"),
        ("\r", "U+000D"),
        ("\x1b", "U+001B"),
        ("\u2028", "U+2028"),
        ("\x85", "U+0085"),
    ],
)
def test_control_characters_in_an_attribute_value_are_refused_at_import_like_names(
    db: Database, char: str, shown: str
) -> None:
    document = minimal()
    document["customers"][0]["attributes"] = {
        "greeting": f"Hello{char}",
        "address": {"lines": ["Main St 1", f"x{char}"]},
        f"note{char}": "fine",
    }
    before = snapshot(db)
    problems = [str(p) for p in load(db, document).problems]
    assert problems == [
        f"customers[0].attributes.greeting: control character {shown} not allowed",
        f"customers[0].attributes.address.lines[1]: control character {shown} not allowed",
        f"customers[0].attributes.note{char}: control character {shown} not allowed in a name",
    ]
    assert snapshot(db) == before


def test_an_attribute_value_may_hold_tabs_and_line_feeds(db: Database) -> None:
    document = minimal()
    attributes = {"address": "Main St 1\n1011 AB\tAmsterdam", "n": 3, "tags": ["a\tb", None]}
    document["customers"][0]["attributes"] = attributes
    load_ok(db, document)
    with db.connect() as connection:
        stored = connection.execute(text("SELECT attributes FROM customer")).scalar_one()
    assert (json.loads(stored) if isinstance(stored, str) else stored) == attributes


# -- 6. the database a user points at ---------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["run", "list"], ["plan", "invoice-email"], ["why", "C001"], ["run", "show", "1"]],
)
def test_a_mistyped_path_is_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str]
) -> None:
    path = tmp_path / "mistyped.db"
    code, out, err = msgrun(capsys, *args, "--db", f"sqlite:///{path}")
    assert (code, out) == (2, "")
    assert f"no database at {path}" in err
    assert list(tmp_path.iterdir()) == []


def test_an_empty_db_option_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = msgrun(capsys, "--db", "", "run", "list")
    assert code == 2 and "--db is empty" in err
    code, _, err = msgrun(capsys, "run", "list", "--db", "")
    assert code == 2 and "--db is empty" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content", [b"hello, this is not a database" * 100, b"SQLite format 3\x00" + b"\x01" * 200]
)
def test_a_file_that_is_not_a_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    for args in (["run", "list"], ["import", str(BLUE_LAGOON)], ["db", "upgrade"]):
        code, out, err = msgrun(capsys, *args, "--db", f"sqlite:///{path}")
        assert (code, out) == (2, ""), err
        assert "is not a msgrun database" in err and str(path) in err
        assert "internal error" not in err and "sqlalche.me" not in err
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_another_programs_database_is_not_taken_over(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    code, _, err = msgrun(capsys, "import", str(BLUE_LAGOON), "--db", f"sqlite:///{path}")
    assert code == 2 and "is not a msgrun database" in err
    with sqlite3.connect(path) as connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master")]
    assert tables == ["notes"]


def test_no_migrate_lock_is_left_behind(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert msgrun(capsys, "import", str(BLUE_LAGOON), "--db", url)[0] == 0
    assert msgrun(capsys, "db", "upgrade", "--db", url)[0] == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "m.db" in names and not [name for name in names if "lock" in name], names


def test_migrating_at_once_from_several_processes(tmp_path: Path) -> None:
    """The lock file is removed by its holder, and still no two processes migrate at once."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    processes = [
        subprocess.Popen(
            [MSGRUN, "--db", url, "db", "upgrade"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in processes]  # type: ignore[union-attr]
    assert [code for code, _, _ in results] == [0] * 4, results
    assert sum(b"upgraded from empty" in out for _, out, _ in results) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.db"]


def _nobody() -> tuple[int, int] | None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def read_only_folder() -> Iterator[Path]:
    """A folder only root may write (tests run as root, whom chmod does not stop)."""
    folder = Path(tempfile.mkdtemp(prefix="msgrun-ro-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


@pytest.fixture(scope="module")
def msgrun_for_nobody() -> Iterator[Path]:
    with msgrun_nobody_can_run() as command:
        yield command


def test_reading_commands_work_on_a_read_only_folder(
    read_only_folder: Path, msgrun_for_nobody: Path
) -> None:
    """As a user who may not write the folder (nobody, via setpriv), not as root; the
    msgrun nobody can run wherever the checkout is (tests/nobody.py)."""
    ids = _nobody()
    if ids is None:
        pytest.skip("needs root and setpriv to run msgrun as a user who cannot write")
    path = read_only_folder / "shared.db"
    url = f"sqlite:///{path}"
    base = [MSGRUN, "--db", url]
    theirs = [str(msgrun_for_nobody), "--db", url]
    subprocess.run([*base, "import", str(BLUE_LAGOON)], check=True, capture_output=True)
    subprocess.run(
        [*base, "run", "start", "service-reminder", "--detach"],
        check=True,
        capture_output=True,
    )
    path.chmod(0o644)
    read_only_folder.chmod(0o555)
    before = sorted(p.name for p in read_only_folder.iterdir())
    as_nobody = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups"]
    env = {**os.environ, "HOME": "/nonexistent"}
    for args in (
        ["run", "list"],
        ["run", "show", "1"],
        ["plan", "invoice-email", "--at", STORY_AT],
        ["why", "C003", "--at", STORY_AT],
    ):
        result = subprocess.run(
            [*as_nobody, *theirs, *args], capture_output=True, text=True, timeout=120, env=env
        )
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout
    written = subprocess.run(
        [*as_nobody, *theirs, "run", "stop", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert written.returncode == 1
    assert "readonly database" in written.stderr and "Traceback" not in written.stderr
    assert sorted(p.name for p in read_only_folder.iterdir()) == before == ["shared.db"]


# -- 9. the command line ------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("msgrun ") and out.strip() != "msgrun"


def test_a_mistyped_flag_shows_that_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = msgrun(capsys, "run", "list", "--limt", "3")
    assert (code, out) == (2, "")
    assert err.startswith("usage: msgrun run list ")
    assert "unrecognized arguments: --limt 3 (see msgrun run list --help)" in err


def test_next_steps_where_a_run_ends_short(db: Database) -> None:
    from tests.delivery_support import document, new_run

    run = get_run(db, new_run(db, document(3, 2525)))
    zero = dict.fromkeys(run.counts, 0)
    stopped = replace(run, state="stopped", counts={**zero, "pending": 2, "sent": 1})
    assert next_step_lines(stopped) == [
        f"next: msgrun run restart {run.id} sends what was not sent"
    ]
    waiting = replace(run, state="waiting", counts={**zero, "unknown": 7, "sent": 3})
    (step,) = next_step_lines(waiting)
    assert f"msgrun run restart {run.id} --resend-unknown" in step and "7 unknown" in step
    failures = replace(run, state="completed_with_failures", counts={**zero, "failed": 2})
    assert next_step_lines(failures) == [
        f"next: msgrun run show {run.id} --state failed lists the 2 failed and why each failed"
    ]
    assert next_step_lines(replace(run, state="completed", counts={**zero, "sent": 3})) == []


def test_a_detached_run_with_nothing_to_send_says_so(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    from tests.delivery_support import document

    everyone_excluded = document(2, 2525)
    everyone_excluded["organisation"]["sender_verified"] = False
    path = tmp_path / "none.json"
    path.write_text(json.dumps(everyone_excluded))
    assert msgrun(capsys, "import", str(path), "--db", db_url)[0] == 0
    code, out, err = msgrun(capsys, "run", "start", "inv", "--detach", "--db", db_url)
    assert code == 0 and out.strip() == "1"
    assert "nothing to send" in err and "msgrun worker" not in err
    path.write_text(json.dumps(document(2, 2525)))
    assert msgrun(capsys, "import", str(path), "--db", db_url)[0] == 0
    code, _, err = msgrun(capsys, "run", "start", "inv", "--detach", "--db", db_url)
    assert code == 0 and f"msgrun worker --db {db_url} delivers it" in err


def test_a_stopped_run_says_how_to_go_on(
    capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path
) -> None:
    from tests.delivery_support import document

    path = tmp_path / "two.json"
    path.write_text(json.dumps(document(2, 2525)))
    assert msgrun(capsys, "import", str(path), "--db", db_url)[0] == 0
    msgrun(capsys, "run", "start", "inv", "--detach", "--db", db_url)
    assert msgrun(capsys, "run", "stop", "1", "--db", db_url)[0] == 0
    code, out, _ = msgrun(capsys, "run", "show", "1", "--db", db_url)
    # The command it suggests works on the database this one was given.
    assert code == 0 and f"next: msgrun run restart 1 --db {db_url} sends what was not sent" in out


def test_run_show_lists_failed_and_unknown_with_their_replies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from fixtures.smtp_servers import Faults, SmtpServer
    from tests.delivery_support import document

    url = f"sqlite:///{tmp_path / 'show.db'}"
    path = tmp_path / "three.json"
    faults = Faults(rcpt={"p1@example.org": ["550 5.1.1 no such user"]})
    with SmtpServer(faults=faults) as server:
        path.write_text(json.dumps(document(3, server.port)))
        assert msgrun(capsys, "import", str(path), "--db", url)[0] == 0
        code, _, err = msgrun(capsys, "run", "start", "inv", "--db", url)
    assert code == 1
    assert f"next: msgrun run show 1 --state failed --db {url} lists the 1 failed" in err

    code, out, _ = msgrun(capsys, "run", "show", "1", "--state", "failed,unknown", "--db", url)
    assert code == 0
    assert "1 failed or unknown:" in out
    assert "C00001  p1@example.org  D00001  failed · 550 5.1.1 at the first attempt" in out
    assert "  550 5.1.1 no such user (settled it)" in out  # the attempt, below it
    assert "p0@example.org" not in out

    code, out, _ = msgrun(
        capsys, "run", "show", "1", "--state", "failed,unknown", "--json", "--db", url
    )
    shown = json.loads(out)
    assert [(r["address"], r["state"]) for r in shown["recipients"]] == [
        ("p1@example.org", "failed")
    ]
    assert shown["counts"]["sent"] == 2

    code, out, err = msgrun(capsys, "run", "show", "1", "--state", "faild", "--db", url)
    assert (code, out) == (2, "")
    assert "'faild': not a recipient state" in err


# -- 5. the console without a terminal --------------------------------------------------


@pytest.mark.parametrize("args", [["console"], []])
def test_the_console_needs_a_terminal(tmp_path: Path, args: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    subprocess.run(
        [MSGRUN, "--db", url, "import", str(BLUE_LAGOON)], check=True, capture_output=True
    )
    for stdout in (subprocess.DEVNULL, subprocess.PIPE):
        result = subprocess.run(
            [MSGRUN, "--db", url, *args],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        assert result.returncode == 2
        assert b"msgrun console needs a terminal" in result.stderr
        assert not result.stdout


def test_the_console_in_a_terminal_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"not a database at all" * 50)
    terminal = Terminal([MSGRUN, "--db", f"sqlite:///{path}"])
    try:
        code = terminal.finish(60)
    finally:
        terminal.close()
    assert code == 2
    assert "is not a msgrun database" in terminal.text and "internal error" not in terminal.text


def test_the_console_draws_the_runs_and_quits_with_q(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    subprocess.run(
        [MSGRUN, "--db", url, "import", str(BLUE_LAGOON)], check=True, capture_output=True
    )
    terminal = Terminal([MSGRUN, "--db", url])
    try:
        assert terminal.wait_for("msgrun · runs", 90), terminal.text
        terminal.type("q")
        assert terminal.finish(60) == 0
    finally:
        terminal.close()


# -- 4. the demo ----------------------------------------------------------------------------


def test_the_demo_refuses_a_folder_it_did_not_make(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "demo3"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("mine")
    (folder / "sub" / "important.txt").write_text("mine too")
    code, _, err = msgrun(capsys, "demo", "--folder", str(folder), "--no-console")
    assert code == 2
    assert "not empty and not an earlier demo's folder; nothing was touched" in err
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "a.txt",
        "sub",
        "sub/important.txt",
    ]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, _, err = msgrun(capsys, "demo", "--folder", str(a_file), "--no-console")
    assert code == 2 and "is a file, not a folder" in err and a_file.read_text() == "x"


def test_an_earlier_demos_folder_is_replaced_keeping_what_else_is_there(tmp_path: Path) -> None:
    from tui.commands.demo_cmd import MARKER, prepare_folder

    folder = tmp_path / "demo"
    prepare_folder(folder)
    assert (folder / MARKER).is_file() and (folder / "mail").is_dir()
    (folder / "demo.db").write_text("old database")
    (folder / "mail" / "old.eml").write_text("old mail")
    (folder / "notes.txt").write_text("a note of the user's")
    prepare_folder(folder)
    assert not (folder / "demo.db").exists()
    assert list((folder / "mail").iterdir()) == []
    assert (folder / "notes.txt").read_text() == "a note of the user's"
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_folder(empty)
    assert (empty / MARKER).is_file()


def test_a_folder_a_running_demo_uses_is_refused_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two demos on one folder: the second would delete the first's database under it."""
    from tui.commands.demo_cmd import prepare_folder

    folder = tmp_path / "demo"
    with prepare_folder(folder):  # a demo running there
        (folder / "demo.db").write_text("the running demo's database")
        code, _, err = msgrun(capsys, "demo", "--folder", str(folder), "--no-console")
        assert code == 2 and "a msgrun demo is running there (pid " in err
        assert "nothing was touched" in err
        assert (folder / "demo.db").read_text() == "the running demo's database"
    # Once that demo has ended, its folder is a demo's folder like any other.
    with prepare_folder(folder):
        assert not (folder / "demo.db").exists()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_demos_delivery_dies_with_its_terminal(tmp_path: Path) -> None:
    """A dropped SSH link: the demo, its SMTP server and the process delivering its run end."""
    folder = tmp_path / "demo"
    terminal = Terminal([MSGRUN, "demo", "--folder", str(folder), "--rate", "1"])
    try:
        assert terminal.wait_for("service-reminder", 120), terminal.text
        deadline = time.monotonic() + 60
        delivering: list[int] = []
        while not delivering and time.monotonic() < deadline:
            delivering = [
                pid
                for pid in _children(terminal.process.pid)
                if b"restart" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            time.sleep(0.1)
        assert delivering, "the demo started a delivering process"
        terminal.hang_up()
        assert terminal.finish(60) is not None, "the demo ended with its terminal"
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in delivering) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in delivering), "its delivering process ended too"
    finally:
        terminal.close()
    database = open_database(f"sqlite:///{folder / 'demo.db'}", create=False)
    try:
        run = get_run(database, 1)
        assert (run.state, run.lease_owner, run.counts["sending"]) == ("stopped", None, 0)
    finally:
        database.dispose()


def test_a_tied_child_ends_when_the_demo_is_killed_outright() -> None:
    """SIGKILL leaves the demo no time to end its children: the kernel tells them."""
    child_code = (
        "from tui.console.launcher import die_with_parent; import time; die_with_parent(); "
        "print('ready', flush=True); time.sleep(120)"
    )
    parent_code = (
        "import os, subprocess, sys, time\n"
        "env = {**os.environ, 'MSGRUN_DIE_WITH': str(os.getpid())}\n"
        f"child = subprocess.Popen([sys.executable, '-c', {child_code!r}], env=env)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        parent.kill()
        parent.wait(30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the child ended with its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
