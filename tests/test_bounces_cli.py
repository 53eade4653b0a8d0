"""msgrun bounces read|list|show and suppressions list|lift: output and exit codes."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from core.storage import Database
from fixtures.smtp_servers import free_port
from tests.bounce_support import SAMPLES, arf_abuse, postfix_dsn, sent_run
from tui import cli

Run = tuple[int, str, str]


def msgrun(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'msgrun.db'}"


def maildir(root: Path, messages: dict[str, bytes]) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    for name, raw in messages.items():
        (root / "new" / name).write_bytes(raw)
    return root


def test_read_a_maildir_then_list_show_and_suppressions(
    capsys: pytest.CaptureFixture[str], sqlite_db: Database, url: str, tmp_path: Path
) -> None:
    run_id, rows = sent_run(sqlite_db)
    a, b, _ = rows
    box = maildir(
        tmp_path / "box",
        {
            "1.a": postfix_dsn(a.message_id, a.address or ""),
            "2.b": arf_abuse(b.message_id, "x@isp.example"),
            "3.c": (SAMPLES / "ooo_en.eml").read_bytes(),
            "4.d": (SAMPLES / "person_reply.eml").read_bytes(),
            "5.e": postfix_dsn(None, "stranger@example.net", own_id="<other@mx>"),
        },
    )
    code, out, err = msgrun(capsys, "bounces", "read", str(box), "--db", url)
    assert (code, err) == (0, "")
    assert out == (
        "5 read: 1 bounce (1 hard, 0 soft), 1 complaint, 0 delays, 1 auto-reply, "
        "1 unmatched, 1 not a report, 0 already read\n"
    )
    assert sorted(p.name for p in (box / "new").iterdir()) == ["4.d"]

    code, out, _ = msgrun(capsys, "bounces", "read", str(box), "--json", "--db", url)
    again = json.loads(out)
    assert (code, again["read"], again["already_read"], again["not_reports"], again["reports"]) == (
        0,
        5,
        4,
        1,
        [],
    )

    code, out, _ = msgrun(capsys, "bounces", "list", "--json", "--db", url)
    listed = json.loads(out)
    assert [(r["kind"], r["type"], r["class"], r["run"], r["matched_by"]) for r in listed] == [
        ("dsn", "bounce", "hard", None, None),
        ("auto_reply", None, None, None, None),
        ("complaint", "complaint", None, run_id, "message_id"),
        ("dsn", "bounce", "hard", run_id, "message_id"),
    ]
    code, out, _ = msgrun(capsys, "bounces", "list", "--unmatched", "--json", "--db", url)
    assert [r["address"] for r in json.loads(out)] == ["stranger@example.net"]
    code, out, _ = msgrun(capsys, "bounces", "list", "--run", str(run_id), "--db", url)
    assert code == 0 and len(out.splitlines()) == 2 and "complaint" in out

    report = listed[-1]["report"]
    code, out, _ = msgrun(capsys, "bounces", "show", str(report), "--db", url)
    assert code == 0
    assert out.startswith(f"report {report}: dsn\n")
    assert f"outcome     bounce hard 5.1.1 {a.address}: run {run_id}, customer " in out
    assert "Diagnostic-Code: smtp; 550 5.1.1" in out  # the raw report follows
    assert msgrun(capsys, "bounces", "show", "999", "--db", url)[0] == 2

    code, out, _ = msgrun(capsys, "suppressions", "list", "--db", url)
    assert out.splitlines() == [
        f"{a.address}  hard_bounce since 2026-11-28, from a bounce report on run {run_id}: "
        f"5.1.1 550 5.1.1 <{a.address}>: Recipient address rejected: User unknown",
        f"{b.address}  spam_complaint since 2026-11-28, from a feedback report on run "
        f"{run_id}: feedback report: abuse (ExampleFBL/1.0)",
    ]
    code, out, _ = msgrun(capsys, "suppressions", "lift", (b.address or "").upper(), "--db", url)
    assert (code, out.startswith(f"lifted: {b.address} (spam_complaint since")) == (0, True)
    code, _, err = msgrun(capsys, "suppressions", "lift", b.address or "", "--db", url)
    assert code == 2 and "is not suppressed" in err
    assert f"(see msgrun suppressions list --db {url})" in err  # runnable as it stands
    code, out, _ = msgrun(capsys, "suppressions", "list", "--json", "--db", url)
    assert [s["address"] for s in json.loads(out)] == [a.address]


def test_every_source_is_checked_before_any_is_read(
    capsys: pytest.CaptureFixture[str], sqlite_db: Database, url: str, tmp_path: Path
) -> None:
    box = maildir(tmp_path / "box", {"1.a": (SAMPLES / "qmail.eml").read_bytes()})
    (tmp_path / "plain").mkdir()
    code, out, err = msgrun(
        capsys,
        "bounces",
        "read",
        str(box),
        str(tmp_path / "nope.eml"),
        str(tmp_path / "plain"),
        "--db",
        url,
    )
    assert (code, out) == (2, "")
    assert f"{tmp_path / 'nope.eml'}: no such file or folder" in err
    assert f"{tmp_path / 'plain'}: a folder but not a Maildir" in err
    assert [p.name for p in (box / "new").iterdir()] == ["1.a"]
    assert "Traceback" not in err


def test_standard_input_with_envelope_to(
    capsys: pytest.CaptureFixture[str],
    sqlite_db: Database,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.messages.verp import verp_address, verp_token

    run_id, rows = sent_run(sqlite_db)
    target = rows[2]
    raw = postfix_dsn(None, "someone-else@example.net", delivered_to="bounces@mail.example.com")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    verp = verp_address("bounces@mail.example.com", verp_token(run_id, target.position))
    code, out, _ = msgrun(
        capsys, "bounces", "read", "-", "--envelope-to", verp, "--json", "--db", url
    )
    [entry] = json.loads(out)["reports"]
    assert (code, entry["source"], entry["matched_by"], entry["customer"]) == (
        0,
        "-",
        "verp",
        target.customer_id,
    )


def test_an_envelope_to_that_is_no_address_is_refused_exit_2_reading_nothing(
    capsys: pytest.CaptureFixture[str], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import url_of
    from tests.db_snapshot import snapshot

    sent_run(db)
    before = snapshot(db)
    raw = postfix_dsn(None, "someone@example.net")
    for bad in ("not an address", "", "bounces@"):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
        code, out, err = msgrun(
            capsys, "bounces", "read", "-", "--envelope-to", bad, "--db", url_of(db)
        )
        assert (code, out) == (2, "")
        assert f"--envelope-to {bad!r} is not an email address" in err
        assert "Traceback" not in err
        assert snapshot(db) == before


def test_a_report_with_a_200_kb_field_is_stored_and_printed_bounded(
    capsys: pytest.CaptureFixture[str], db: Database, tmp_path: Path
) -> None:
    from tests.conftest import url_of

    _, rows = sent_run(db)
    huge = "x" * 200_000
    raw = postfix_dsn(rows[0].message_id, rows[0].address or "").decode()
    raw = raw.replace("Final-Recipient: rfc822; ", f"Final-Recipient: rfc822; {huge}")
    raw = raw.replace("smtp; 550 5.1.1", f"smtp; 550 5.1.1 {huge}")
    source = tmp_path / "huge.eml"
    source.write_text(raw)
    code, out, err = msgrun(capsys, "bounces", "read", str(source), "--json", "--db", url_of(db))
    assert code == 0, err
    [entry] = json.loads(out)["reports"]
    assert (entry["kind"], entry["class"], entry["matched_by"]) == ("bounce", "hard", "message_id")
    assert len(out) < 5_000
    code, out, _ = msgrun(capsys, "bounces", "list", "--json", "--db", url_of(db))
    assert code == 0 and huge not in out and len(out) < 5_000
    code, out, _ = msgrun(capsys, "bounces", "list", "--db", url_of(db))
    assert code == 0 and huge not in out


def test_database_failures_exit_75(
    capsys: pytest.CaptureFixture[str],
    sqlite_db: Database,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample = str(SAMPLES / "postfix_dsn.eml")
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    code, _, err = msgrun(capsys, "bounces", "read", sample, "--db", closed)
    assert code == 75 and "cannot open" in err

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr("core.bounces.store._store", broken)
    code, _, err = msgrun(capsys, "bounces", "read", sample, "--db", url)
    assert code == 75 and "cannot store the report from" in err and "Traceback" not in err
    # The database's own words in one line, not the statement that failed.
    assert err.strip().endswith("disk I/O error") and "[SQL" not in err


def test_imap_unreachable_exits_1(
    capsys: pytest.CaptureFixture[str],
    sqlite_db: Database,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MSGRUN_IMAP_PASSWORD", "x")
    code, out, err = msgrun(
        capsys, "bounces", "read", f"imap://ops@127.0.0.1:{free_port()}/INBOX", "--db", url
    )
    assert code == 1 and "cannot reach the IMAP server" in err
    assert out.startswith("0 read:")
    monkeypatch.delenv("MSGRUN_IMAP_PASSWORD")
    code, _, err = msgrun(capsys, "bounces", "read", "imap://ops@127.0.0.1/INBOX", "--db", url)
    assert code == 2 and "MSGRUN_IMAP_PASSWORD is not set" in err


def test_bounces_list_for_an_unknown_run_exits_2(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["db", "upgrade", "--db", url]) == 0
    capsys.readouterr()
    assert cli.main(["bounces", "list", "--run", "99", "--db", url]) == 2
    assert "unknown run 99" in capsys.readouterr().err
