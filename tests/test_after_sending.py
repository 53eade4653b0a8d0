"""What reports do to runs: `unknown` proven `sent`, outcomes in `run show`, the export
and the follow-up (after-sending.md), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from sqlalchemy import select

from core.bounces.sources import SourceMessage
from core.bounces.store import ReadSummary, record_message
from core.planner.plan import make_plan
from core.run_info import get_run
from core.storage import Database
from core.storage.models import History, Recipient, SmtpProfile, table_of
from core.views.run_json import run_json
from fixtures.smtp_servers import SmtpServer
from tests.bounce_support import NOW, arf_abuse, postfix_dsn
from tests.conftest import url_of
from tests.delivery_support import (
    assert_counts_match_rows,
    deliver_now,
    document,
    fabricate_recipient_state,
    fabricate_run_state,
    new_run,
)
from tui import cli


def delivered(
    db: Database, count: int = 4, dedup: str = "per_document"
) -> tuple[int, dict[str, Any]]:
    """A run delivered for real: every recipient `sent`; address → its row."""
    with SmtpServer() as server:
        doc = document(count, server.port)
        doc["definitions"][0]["dedup"] = dedup
        run_id = new_run(db, doc)
        deliver_now(db, run_id)
    table = table_of(Recipient)
    with db.connect() as connection:
        rows = connection.execute(select(table).where(table.c.run_id == run_id)).all()
    return run_id, {r.address: r for r in rows}


def make_unknown(db: Database, run_id: int, *ids: int) -> None:
    """As a crash leaves them: in doubt, the run ended with failures."""
    with db.connect() as connection:
        fabricate_recipient_state(connection, run_id, list(ids), "sent", "unknown")
        fabricate_run_state(connection, run_id, "completed_with_failures", ended_at=NOW)
        connection.execute(table_of(History).delete().where(table_of(History).c.run_id == run_id))


def read(db: Database, *raws: bytes) -> ReadSummary:
    summary = ReadSummary()
    for i, raw in enumerate(raws):
        record_message(db, SourceMessage(f"m{i}", raw, lambda: None), NOW, summary)
    return summary


def test_a_report_proves_an_unknown_recipient_was_sent_and_the_run_completes(
    db: Database,
) -> None:
    run_id, rows = delivered(db, 3)
    p1, p2 = rows["p1@example.org"], rows["p2@example.org"]
    make_unknown(db, run_id, p1.id, p2.id)
    assert get_run(db, run_id).counts["unknown"] == 2

    # A delay about p1: it reached a server. The run still has p2 in doubt.
    read(db, postfix_dsn(p1.message_id, p1.address, status="4.4.1"))
    run = get_run(db, run_id)
    assert (run.state, run.counts["unknown"], run.counts["sent"]) == (
        "completed_with_failures",
        1,
        2,
    )
    # A hard bounce about p2: it reached a server too; nothing is left in doubt.
    read(db, postfix_dsn(p2.message_id, p2.address, own_id="<other@mx.example.com>"))
    run = get_run(db, run_id)
    assert (run.state, run.counts["unknown"], run.counts["sent"]) == ("completed", 0, 3)
    assert_counts_match_rows(db, run_id)
    # It is in the dedup ledger again: a plan says already_sent, not a second send.
    plan = make_plan(db, "inv", NOW, environ={})
    by_address = {c.address: c.codes() for c in plan.candidates}
    assert by_address["p1@example.org"] == ["already_sent"]
    assert by_address["p2@example.org"] == ["suppressed", "already_sent"]


def test_a_sent_recipient_keeps_its_state_and_gains_its_most_serious_outcome(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, rows = delivered(db, 3)
    p0, p1 = rows["p0@example.org"], rows["p1@example.org"]
    read(
        db,
        postfix_dsn(p0.message_id, p0.address, status="4.2.2", own_id="<d1@mx.example.com>"),
        postfix_dsn(p0.message_id, p0.address, own_id="<d2@mx.example.com>"),
        arf_abuse(p1.message_id, p1.address),
    )
    shown = run_json(db, run_id)
    assert shown["state"] == "completed"
    assert shown["outcomes"] == {"bounce_hard": 1, "bounce_soft": 0, "complaint": 1, "delay": 0}
    recipients = {r["address"]: r for r in shown["recipients"]}
    assert recipients["p0@example.org"]["state"] == "sent"
    hard = recipients["p0@example.org"]["outcome"]
    assert (hard["type"], hard["class"], hard["status"]) == ("bounce", "hard", "5.1.1")
    assert "User unknown" in hard["detail"] and hard["reported_at"].endswith("+00:00")
    assert recipients["p1@example.org"]["outcome"]["type"] == "complaint"
    assert recipients["p2@example.org"]["outcome"] is None

    # The export names the outcomes and filters by them.
    assert cli.main(["run", "export", str(run_id), "--outcome", "bounce", "--db", url_of(db)]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out, newline="")))
    assert [(r["address"], r["outcome"], r["status"]) for r in table] == [
        ("p0@example.org", "bounce_hard", "5.1.1")
    ]
    args = ["--outcome", "complaint", "--format", "json", "--db", url_of(db)]
    assert cli.main(["run", "export", str(run_id), *args]) == 0
    [complained] = json.loads(capsys.readouterr().out)
    assert (complained["address"], complained["outcome"]) == ("p1@example.org", "complaint")


def test_a_follow_up_by_default_takes_the_bounced_and_plans_them_suppressed(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, rows = delivered(db, 3)
    p0 = rows["p0@example.org"]
    read(db, postfix_dsn(p0.message_id, p0.address))
    assert cli.main(["run", "follow-up", str(run_id), "--detach", "--db", url_of(db)]) == 0
    new_id = int(capsys.readouterr().out.splitlines()[0])
    shown = run_json(db, new_id)
    [only] = shown["recipients"]
    assert (only["address"], only["state"]) == ("p0@example.org", "excluded")
    assert [r["code"] for r in only["reasons"]] == ["suppressed"]
    assert "from a bounce report on run" in only["reasons"][0]["detail"]
    assert shown["state"] == "completed" and shown["follow_up_of"] == run_id


@pytest.mark.parametrize("dedup", ["per_document", "per_trigger"])
def test_a_follow_up_sends_again_to_a_bounced_recipient_and_a_second_one_does_not(
    db: Database, capsys: pytest.CaptureFixture[str], dedup: str
) -> None:
    """The followed run sent it (its ledger and its hold say so): neither stops the
    follow-up. What the follow-up delivered stops a second one, whatever the policy."""
    run_id, rows = delivered(db, 2, dedup)
    p0 = rows["p0@example.org"]
    read(db, postfix_dsn(p0.message_id, p0.address, status="4.2.2"))  # soft: no suppression
    with SmtpServer() as server:
        port = server.port
        with db.connect() as connection:
            connection.execute(table_of(SmtpProfile).update().values(port=port))
        assert cli.main(["run", "follow-up", str(run_id), "--db", url_of(db)]) == 0
        first = int(capsys.readouterr().out.splitlines()[0])
        shown = run_json(db, first)
        assert [(r["address"], r["state"]) for r in shown["recipients"]] == [
            ("p0@example.org", "sent")
        ]
        assert server.count("p0@example.org") == 1
        assert cli.main(["run", "follow-up", str(run_id), "--db", url_of(db)]) == 0
        second = int(capsys.readouterr().out.splitlines()[0])
        again = run_json(db, second)
        [only] = again["recipients"]
        assert only["state"] == "excluded"
        assert f"follow-up run {first}" in only["reasons"][-1]["detail"]
        assert server.count("p0@example.org") == 1


def test_a_second_follow_up_sends_what_the_first_could_not(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """per_trigger records its targets when a run is made: a first follow-up that sent
    nothing (the address was suppressed then) does not stop a second one."""
    run_id, rows = delivered(db, 2, "per_trigger")
    p0 = rows["p0@example.org"]
    read(db, postfix_dsn(p0.message_id, p0.address))  # hard: suppressed
    assert cli.main(["run", "follow-up", str(run_id), "--detach", "--db", url_of(db)]) == 0
    first = int(capsys.readouterr().out.splitlines()[0])
    assert run_json(db, first)["recipients"][0]["state"] == "excluded"
    assert cli.main(["suppressions", "lift", "p0@example.org", "--db", url_of(db)]) == 0
    capsys.readouterr()
    with SmtpServer() as server:
        with db.connect() as connection:
            connection.execute(table_of(SmtpProfile).update().values(port=server.port))
        assert cli.main(["run", "follow-up", str(run_id), "--db", url_of(db)]) == 0
        second = int(capsys.readouterr().out.splitlines()[0])
        assert [r["state"] for r in run_json(db, second)["recipients"]] == ["sent"]
        assert server.count("p0@example.org") == 1
