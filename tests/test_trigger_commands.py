"""``msgrun event fire``, ``msgrun routine list`` and a routine firing under ``msgrun worker``."""

from __future__ import annotations

import copy
import json
import signal
import time
from pathlib import Path

import pytest

from core.run_info import list_runs
from core.storage import open_database
from fixtures.smtp_servers import SmtpServer
from tests.test_run_commands import Msgrun
from tests.test_triggers import event_document, routine_document

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def msgrun(tmp_path: Path) -> Msgrun:
    return Msgrun(tmp_path)


def test_event_fire_exit_codes_and_messages(msgrun: Msgrun) -> None:
    msgrun.load(event_document())
    fired = msgrun("event", "fire", "job_selling", "--customer", "C1")
    assert fired.returncode == 0, fired.stderr
    assert fired.stdout.startswith("selling: run 1, 1 to send, 0 excluded")
    again = msgrun("event", "fire", "job_selling", "--customer", "C1", "--customer", "C2")
    assert again.returncode == 0 and "selling: run 2, 1 to send, 1 excluded" in again.stdout
    why = msgrun("why", "C1", "--definition", "selling")
    assert "already_targeted" in why.stdout and "by run 1" in why.stdout
    nobody = msgrun("event", "fire", "job_closed")
    assert nobody.returncode == 0 and "warning: no definition listens" in nobody.stderr
    for args, message in (
        (["Job Selling"], "is not an event name"),
        (["job_selling", "--customer", "C404"], "unknown customer(s): C404"),
        (["job_selling", "--at", "tomorrow"], "--at"),
    ):
        result = msgrun("event", "fire", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert len(list_runs(open_database(msgrun.url))) == 2


def test_routine_list_on_a_new_database_says_there_are_none(msgrun: Msgrun) -> None:
    assert msgrun("db", "upgrade").returncode == 0  # only import, db upgrade and demo create one
    text = msgrun("routine", "list")
    assert text.returncode == 0 and text.stdout.startswith("no routines"), text.stderr
    listed = msgrun("routine", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"routines": []}


def test_routine_list_text_and_json(msgrun: Msgrun) -> None:
    doc = routine_document()
    doc["organisation"]["sender_verified"] = False
    msgrun.load(doc)
    text = msgrun("routine", "list")
    assert text.returncode == 0
    assert "inv  '0 9 * * *' in Australia/Sydney, enabled" in text.stdout
    assert "would not send: sender_not_verified" in text.stdout
    data = json.loads(msgrun("routine", "list", "--json").stdout)
    (routine,) = data["routines"]
    assert routine["definition"] == "inv" and routine["would_send"] is False
    assert routine["next_fire_utc"].endswith("T22:00:00+00:00")
    assert routine["next_fire_local"].endswith("T09:00:00+11:00")
    assert [b["code"] for b in routine["blockers"]] == ["sender_not_verified"]
    assert routine["last"] is None


def test_a_routine_set_for_the_next_minute_runs_by_itself_under_the_worker_once(
    msgrun: Msgrun,
) -> None:
    with SmtpServer() as server:
        doc = copy.deepcopy(routine_document(cron="* * * * *"))
        doc["smtp_profiles"][0]["port"] = server.port
        doc["documents"][0]["due_date"] = None
        doc["definitions"][0]["use_billing_rules"] = False
        msgrun.load(doc)
        worker = msgrun.start("worker")
        try:
            deadline = time.monotonic() + 75
            while not server.messages():
                assert time.monotonic() < deadline, "the routine did not run by itself"
                time.sleep(0.2)
            time.sleep(1.0)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(20) == 0
        runs = sorted(list_runs(open_database(msgrun.url)), key=lambda r: r.id)
        listed = json.loads(msgrun("routine", "list", "--json").stdout)["routines"][0]
    assert len(runs) >= 1 and runs[0].started_by.startswith("routine inv @ ")
    # One run per minute that passed, never two for the same fire time.
    assert len({r.started_by for r in runs}) == len(runs)
    assert server.recipients() == {"ana@example.org": 1}  # dedup per_document: once
    assert listed["last"]["run"] == runs[-1].id
