"""``msgrun run export``: every recipient, filters, CSV that round-trips, JSON, exit codes."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from core.storage import Database
from core.storage.models import Customer, table_of
from core.views import export_rows
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import url_of
from tests.delivery_support import deliver_now, document, new_run
from tui import cli

TRICKY = 'Souza, Ana "Aninha" Müller\nsecond line'


def _delivered_run(db: Database) -> int:
    """Five recipients: one refused for good, one excluded, three sent; a tricky name."""
    with SmtpServer(faults=Faults(rcpt={"p1@example.org": ["550 5.1.1 no such user"]})) as server:
        doc = document(5, server.port)
        doc["customers"][2]["contacts"][0]["allow_email"] = False
        run_id = new_run(db, doc)
        deliver_now(db, run_id)
    # The import refuses a line break in a name; a database written by another
    # program may hold one all the same, and the export must carry it whole.
    customer = table_of(Customer)
    with db.connect() as connection:
        connection.execute(update(customer).where(customer.c.id == "C00000").values(name=TRICKY))
    return run_id


def _export(capsys: pytest.CaptureFixture[str], db: Database, *args: str) -> tuple[int, str, str]:
    code = cli.main(["run", "export", *args, "--db", url_of(db)])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_recipient_is_exported_with_the_spec_columns_and_round_trips_through_csv(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _delivered_run(db)
    code, out, err = _export(capsys, db, str(run_id))
    assert (code, err) == (0, "")
    table = list(csv.DictReader(io.StringIO(out, newline="")))
    assert list(table[0].keys()) == list(export_rows.COLUMNS)
    assert [r["customer"] for r in table] == [f"C{i:05d}" for i in range(5)]
    by_customer = {r["customer"]: r for r in table}
    assert by_customer["C00000"]["customer_name"] == TRICKY
    assert by_customer["C00000"]["state"] == "sent"
    assert by_customer["C00000"]["smtp_code"] == "250"
    assert by_customer["C00000"]["last_attempt_at"].endswith("+00:00")
    assert by_customer["C00000"]["message_id"].startswith("<")
    failed = by_customer["C00001"]
    assert (failed["state"], failed["smtp_code"]) == ("failed", "550")
    assert "5.1.1 no such user" in failed["smtp_reply"]
    excluded = by_customer["C00002"]
    assert excluded["state"] == "excluded"
    assert excluded["reasons"] == "contact_email_not_allowed"
    assert "allow_email" in excluded["reason_details"]
    never_tried = (excluded["attempts"], excluded["last_attempt_at"], excluded["smtp_code"])
    assert never_tried == ("0", "", "")
    # RFC 4180: CRLF line ends, the header first.
    assert out.startswith(",".join(export_rows.COLUMNS) + "\r\n")


def test_filters_choose_by_state_and_json_has_numbers_and_nulls(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _delivered_run(db)
    code, out, _ = _export(
        capsys, db, str(run_id), "--state", "failed,excluded", "--format", "json"
    )
    assert code == 0
    data = json.loads(out)
    assert [(r["customer"], r["state"]) for r in data] == [
        ("C00001", "failed"),
        ("C00002", "excluded"),
    ]
    assert data[0]["smtp_code"] == 550 and data[0]["attempts"] == 1
    assert data[1]["smtp_code"] is None and data[1]["outcome"] is None
    assert data[1]["last_attempt_at"] is None
    assert list(data[0].keys()) == list(export_rows.COLUMNS)

    code, out, _ = _export(capsys, db, str(run_id), "--state", "unknown", "--format", "json")
    assert (code, json.loads(out)) == (0, [])


def test_out_writes_a_file_and_says_so(
    db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_id = _delivered_run(db)
    target = tmp_path / "run.csv"
    code, out, err = _export(capsys, db, str(run_id), "--out", str(target))
    assert (code, out) == (0, "")
    assert f"exported to {target}" in err
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and rows[0]["customer_name"] == TRICKY
    assert not target.read_bytes().startswith(b"\xef\xbb\xbf")  # no byte-order mark
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["99"], "unknown run"),
        (["x1"], "unknown run"),
        (["RUN", "--state", "sent,lost"], "unknown state 'lost'"),
        (["RUN", "--outcome", "bounced"], "unknown outcome 'bounced'"),
        (["RUN", "--state", "sent,"], "empty name"),
        (["RUN", "--out", "/no/such/folder/x.csv"], "does not exist"),
    ],
)
def test_bad_input_exits_2_naming_it_and_writes_nothing(
    sqlite_db: Database,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    words: str,
) -> None:
    run_id = _delivered_run(sqlite_db)
    args = [str(run_id) if a == "RUN" else a for a in args]
    code, out, err = _export(capsys, sqlite_db, *args)
    assert code == 2 and out == ""
    assert words in err and "Traceback" not in err


def test_selection_parses_and_names_files() -> None:
    chosen = export_rows.selection("failed,unknown,failed", "bounce")
    assert chosen.states == ("failed", "unknown")
    assert chosen.slug == "failed-unknown-bounce"
    assert export_rows.selection(None, None).everyone


def test_the_file_is_readable_as_any_new_file_and_a_folder_that_refuses_is_said(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import os
    import stat

    run_id = _delivered_run(sqlite_db)
    old = os.umask(0o022)
    try:
        target = tmp_path / "for-care.csv"
        assert _export(capsys, sqlite_db, str(run_id), "--out", str(target))[0] == 0
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    finally:
        os.umask(old)
    # /proc exists and looks writable to root, but no file can be made there.
    code, out, err = _export(capsys, sqlite_db, str(run_id), "--out", "/proc/x.csv")
    assert (code, out) == (1, "")
    assert "cannot write in /proc" in err and "internal error" not in err


def test_out_writes_into_what_is_not_a_regular_file_and_keeps_what_it_replaces(
    db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_id = _delivered_run(db)
    # A symbolic link, replaced with --force: the file it points at is written, the
    # link stays, and so do the file's permissions.
    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("old")
    real.chmod(0o600)
    link.symlink_to(real)
    code, _, err = _export(capsys, db, str(run_id), "--out", str(link), "--force")
    assert code == 0, err
    assert link.is_symlink() and real.read_text().startswith("customer,customer_name")
    assert real.stat().st_mode & 0o777 == 0o600
    # A device is written into, never replaced by a file.
    code, _, err = _export(capsys, db, str(run_id), "--out", "/dev/null")
    assert code == 0 and Path("/dev/null").is_char_device()
    if Path("/dev/full").exists():
        code, _, err = _export(capsys, db, str(run_id), "--out", "/dev/full")
        assert code == 1 and "cannot write /dev/full: No space left on device" in err
        assert Path("/dev/full").is_char_device()


def test_a_standard_output_that_takes_nothing_is_said_exit_1(db: Database, tmp_path: Path) -> None:
    import subprocess
    import sys

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    run_id = _delivered_run(db)
    msgrun = str(Path(sys.executable).with_name("msgrun"))
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [msgrun, "run", "export", str(run_id), "--db", url_of(db)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert result.returncode == 1
    assert "cannot write to standard output: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr


FORMULA = '=HYPERLINK("http://evil.example/x","Click for refund")'


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (FORMULA, "'" + FORMULA),
        ("+31 20 555 0100", "'+31 20 555 0100"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("Ana = Souza", "Ana = Souza"),
        ("a-b@example.org", "a-b@example.org"),
        (None, ""),
        (550, 550),
    ],
)
def test_a_cell_a_spreadsheet_would_run_as_a_formula_gets_a_leading_quote(
    value: object, cell: object
) -> None:
    from core.views.export_file import csv_cell

    assert csv_cell(value) == cell


def test_a_formula_in_a_customer_s_name_is_quoted_in_csv_and_kept_as_it_is_in_json(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = _delivered_run(db)
    customer = table_of(Customer)
    with db.connect() as connection:
        connection.execute(update(customer).where(customer.c.id == "C00003").values(name=FORMULA))
        connection.execute(
            update(customer).where(customer.c.id == "C00004").values(name="@SUM(A1:A9)")
        )
    code, out, _ = _export(capsys, db, str(run_id))
    assert code == 0
    names = {
        r["customer"]: r["customer_name"] for r in csv.DictReader(io.StringIO(out, newline=""))
    }
    assert names["C00003"] == "'" + FORMULA
    assert names["C00004"] == "'@SUM(A1:A9)"
    assert names["C00000"] == TRICKY
    code, out, _ = _export(capsys, db, str(run_id), "--format", "json")
    names = {r["customer"]: r["customer_name"] for r in json.loads(out)}
    assert (names["C00003"], names["C00004"]) == (FORMULA, "@SUM(A1:A9)")


def test_out_refuses_an_existing_file_without_force_and_replaces_it_with_force(
    db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_id = _delivered_run(db)
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "run1.export"  # a name of neither format: both are written to it
    target.write_text("300 rows of last week\n")
    for form in ("csv", "json"):
        code, out, err = _export(capsys, db, str(run_id), "--format", form, "--out", str(target))
        assert (code, out) == (2, "")
        assert f"--out {target}: the file exists" in err and "--force" in err
        assert "Traceback" not in err
        assert target.read_text() == "300 rows of last week\n"
        assert sorted(p.name for p in folder.iterdir()) == ["run1.export"]
    code, _, err = _export(capsys, db, str(run_id), "--out", str(target), "--force")
    assert code == 0, err
    assert target.read_text(encoding="utf-8").startswith("customer,customer_name")
    assert sorted(p.name for p in folder.iterdir()) == ["run1.export"]


def test_a_link_counts_as_the_file_it_points_at(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_id = _delivered_run(sqlite_db)
    real, link, dangling = tmp_path / "real.csv", tmp_path / "link.csv", tmp_path / "d.csv"
    real.write_text("old")
    link.symlink_to(real)
    dangling.symlink_to(tmp_path / "nowhere.csv")
    for name in (link, dangling):
        code, _, err = _export(capsys, sqlite_db, str(run_id), "--out", str(name))
        assert code == 2 and f"--out {name}: the file exists" in err
    assert real.read_text() == "old" and not (tmp_path / "nowhere.csv").exists()
    device = tmp_path / "device.csv"
    device.symlink_to("/dev/null")
    code, _, err = _export(capsys, sqlite_db, str(run_id), "--out", str(device))
    assert code == 0, err
    assert device.is_symlink() and Path("/dev/null").is_char_device()
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    code, _, err = _export(capsys, sqlite_db, str(run_id), "--out", str(loop), "--force")
    assert code == 2 and "a loop of links" in err and "Traceback" not in err


def test_out_writes_into_a_fifo_without_force(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import os
    import threading

    run_id = _delivered_run(sqlite_db)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, err = _export(capsys, sqlite_db, str(run_id), "--out", str(fifo))
    reader.join(timeout=30)
    assert code == 0, err
    assert received and received[0].startswith(b"customer,customer_name")
    assert fifo.is_fifo()


def test_a_file_made_while_the_export_runs_is_not_replaced(tmp_path: Path) -> None:
    from core.views.export_file import TargetExists, write_lines

    target = tmp_path / "run.csv"

    def lines() -> Iterator[str]:
        yield "header\r\n"
        target.write_text("someone else's")  # appears between the check and the end
        yield "row\r\n"

    with pytest.raises(TargetExists, match="the file exists"):
        write_lines(target, lines())
    assert target.read_text() == "someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.csv"]
    assert write_lines(target, lines(), replace=True) == 2
    assert target.read_bytes() == b"header\r\nrow\r\n"


def _export_process(db: Database, run_id: int, out: str, stdout: Any) -> Any:
    """``msgrun run export RUN --out OUT`` as a process of its own, its stdout ``stdout``."""
    import subprocess
    import sys

    msgrun = str(Path(sys.executable).with_name("msgrun"))
    return subprocess.Popen(
        [msgrun, "run", "export", str(run_id), "--out", out, "--db", url_of(db)],
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("out", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_out_writes_into_a_standard_output_that_is_a_pipe_without_force(
    sqlite_db: Database, out: str
) -> None:
    import subprocess

    run_id = _delivered_run(sqlite_db)
    process = _export_process(sqlite_db, run_id, out, subprocess.PIPE)
    received, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert received.startswith(b"customer,customer_name") and received.count(b"\r\n") >= 6
    assert f"exported to {out}".encode() in err and b"Traceback" not in err


def test_out_writes_into_a_standard_output_that_is_a_socket(sqlite_db: Database) -> None:
    import socket
    import threading

    run_id = _delivered_run(sqlite_db)
    ours, theirs = socket.socketpair()
    received = bytearray()

    def read() -> None:
        while chunk := ours.recv(65536):
            received.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with theirs:
        process = _export_process(sqlite_db, run_id, "/dev/stdout", theirs)
    _, err = process.communicate(timeout=120)
    reader.join(timeout=30)
    ours.close()
    assert process.returncode == 0, err
    assert bytes(received).startswith(b"customer,customer_name")
    assert bytes(received).count(b"\r\n") >= 6


def test_a_standard_output_that_is_a_regular_file_is_still_not_replaced_without_force(
    sqlite_db: Database, tmp_path: Path
) -> None:
    run_id = _delivered_run(sqlite_db)
    target = tmp_path / "kept.csv"
    with open(target, "w") as stdout:
        process = _export_process(sqlite_db, run_id, "/dev/stdout", stdout)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert b"--out /dev/stdout: the file exists" in err and b"Traceback" not in err
    assert target.read_text() == ""


def test_a_pipe_whose_reader_left_ends_the_export_quietly(tmp_path: Path) -> None:
    """Written into a pipe nobody reads any more, the export stops: ``ReaderLeft``, not
    the OS error of a file that cannot be written."""
    import os

    from core.views.export_file import ReaderLeft, write_lines

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with pytest.raises(ReaderLeft, match="its reader stopped reading"):
            write_lines(Path(f"/proc/self/fd/{write_end}"), iter(["header\r\n", "row\r\n"]))
    finally:
        os.close(write_end)


def test_out_dev_stdout_into_a_pipe_closed_early_exits_0_without_a_word(
    sqlite_db: Database,
) -> None:
    """``msgrun run export RUN --out /dev/stdout | head -1``: as without ``--out``."""
    import os

    run_id = _delivered_run(sqlite_db)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first row
    try:
        process = _export_process(sqlite_db, run_id, "/dev/stdout", write_end)
    finally:
        os.close(write_end)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert err == b""


@pytest.mark.parametrize(
    ("args", "named", "chosen"),
    [
        (("--out", "{folder}/run.json"), "JSON", "the default format, CSV"),
        (("--format", "csv", "--out", "{folder}/run.JSON"), "JSON", "--format csv"),
        (("--format", "json", "--out", "{folder}/run.csv"), "CSV", "--format json"),
    ],
)
def test_an_out_file_named_for_the_other_format_is_refused(
    sqlite_db: Database,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: tuple[str, ...],
    named: str,
    chosen: str,
) -> None:
    """CSV written into ``run.json`` (or JSON into ``run.csv``) is refused, nothing
    written; the file's name in the other format is what the message offers."""
    run_id = _delivered_run(sqlite_db)
    folder = tmp_path / "out"
    folder.mkdir()
    given = [a.format(folder=folder) for a in args]
    code, out, err = _export(capsys, sqlite_db, str(run_id), *given)
    assert (code, out) == (2, "")
    assert f"names a {named} file, but {chosen} was chosen" in err
    assert "nothing was written" in err and "Traceback" not in err
    assert list(folder.iterdir()) == []


def test_an_out_file_named_json_is_written_as_json_when_asked(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_id = _delivered_run(sqlite_db)
    target = tmp_path / "run.json"
    code, _, err = _export(capsys, sqlite_db, str(run_id), "--format", "json", "--out", str(target))
    assert code == 0, err
    assert json.loads(target.read_text(encoding="utf-8"))[0]["customer"]


def test_named_format_reads_the_files_name() -> None:
    from core.views.export_file import named_format

    assert [named_format(p) for p in ("a/run.json", "run.CSV", "run.xml", "run", "json")] == [
        "json",
        "csv",
        None,
        None,
        None,
    ]
