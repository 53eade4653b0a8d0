"""The whole answer, after sending (after-sending.md): every attempt, how each recipient
settled, why one waits, its reports and its hand-on, said alike by `why`, `run show` and
`run list`; on SQLite and PostgreSQL.

One scenario, driven by a controllable clock (no real waiting for retries): a server
that greylists C00001, refuses C00002 with 5.1.1, and throttles C00003 for ever; C00004
waits for its quiet hours (Auckland); C00005 is excluded; C00000's message bounces later
(a DSN), C00006 complains (ARF); then a follow-up takes the failed and the bounced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.clock import FixedClock, parse_instant
from core.delivery import transitions
from core.follow_up import start_follow_up
from core.storage import Database
from core.storage.models import Recipient, table_of
from core.views.export_rows import Selection
from fixtures.smtp_servers import Faults, SmtpServer, free_port
from tests.bounce_support import arf_abuse, postfix_dsn, sent_run
from tests.conftest import url_of
from tests.delivery_support import AT, assert_counts_match_rows, deliver_now, document, new_run
from tests.test_after_sending import read
from tui import cli

T0 = parse_instant(AT)  # 2026-11-23 10:00 UTC: 23:00 in Auckland, inside 21:00–09:00
THROTTLED = "421 4.7.0 Too many messages, try again later"
# Every 15 minutes (retries come 8 to 12 minutes apart), then at the end of the budget.
STEPS = [timedelta(minutes=m) for m in (0, 15, 30, 45, 60, 62)]


@dataclass
class Scenario:
    db: Database
    run_id: int
    follow_up: int
    clock: FixedClock

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> str:
        capsys.readouterr()
        assert cli.main([*args, "--db", url_of(self.db)]) == 0
        return capsys.readouterr().out

    def why(self, capsys: pytest.CaptureFixture[str], customer: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.cli(capsys, "why", customer, "--json", "--at", AT))
        return found

    def delivery(self, capsys: pytest.CaptureFixture[str], customer: str) -> dict[str, Any]:
        """The customer's delivery in the scenario's run (not the follow-up's)."""
        [mine] = [d for d in self.why(capsys, customer)["deliveries"] if d["run"] == self.run_id]
        return mine


@pytest.fixture
def scenario(db: Database) -> Scenario:
    clock = FixedClock(T0)
    faults = Faults(
        rcpt={
            "p1@example.org": ["450 4.2.0 Greylisted, try again later"],
            "p2@example.org": ["550 5.1.1 <p2@example.org>: Recipient address rejected"],
        },
        data={"p3@example.org": [THROTTLED] * 100},
    )
    with SmtpServer(faults=faults) as server:
        doc = document(7, server.port, retry_after_seconds=[600], retry_for_seconds=3720)
        doc["definitions"][0]["dedup"] = "per_document"
        doc["definitions"][0]["quiet_hours"] = {"start": "21:00", "end": "09:00"}
        doc["customers"][4]["timezone"] = "Pacific/Auckland"
        doc["customers"][5]["contacts"][0]["allow_email"] = False
        run_id = new_run(db, doc, clock=clock)
        for step in STEPS:
            clock.set(T0 + step)
            assert deliver_now(db, run_id, clock).state == "waiting"  # C00004 waits till 20:00
    table = table_of(Recipient)
    with db.connect() as connection:
        ids = dict(
            connection.execute(
                select(table.c.address, table.c.message_id).where(table.c.run_id == run_id)
            ).all()
        )
    read(
        db,
        postfix_dsn(ids["p0@example.org"], "p0@example.org"),
        arf_abuse(ids["p6@example.org"], "p6@example.org"),
    )
    clock.set(T0 + timedelta(minutes=63))
    follow_up = start_follow_up(db, run_id, Selection(), clock.now(), clock)
    assert_counts_match_rows(db, run_id)
    return Scenario(db, run_id, follow_up, clock)


def at(delta: timedelta) -> str:
    return (T0 + delta).isoformat()


def test_why_lists_every_delivery_newest_run_first_with_each_attempt_and_how_it_settled(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    deliveries = scenario.why(capsys, "C00003")["deliveries"]
    assert [(d["run"], d["state"]) for d in deliveries] == [
        (scenario.follow_up, "pending"),
        (scenario.run_id, "failed"),
    ]
    throttled = deliveries[1]
    assert throttled["attempts"] == 6
    assert throttled["attempt_log"] == [
        {"at": at(step), "smtp_code": 421, "reply": THROTTLED[4:]} for step in STEPS
    ]
    assert throttled["settled"] == (
        f"gave up after 6 attempts over 1 h 02 min: the last reply {THROTTLED}"
    )
    assert throttled["handed_on_to"] == scenario.follow_up
    assert (throttled["held_until"], throttled["held_because"]) == (None, None)
    assert throttled["definition"] == "inv" and throttled["document"] == "D00003"

    refused = scenario.delivery(capsys, "C00002")
    assert refused["settled"] == "550 5.1.1 at the first attempt"
    assert refused["attempt_log"] == [
        {
            "at": at(STEPS[0]),
            "smtp_code": 550,
            "reply": "5.1.1 <p2@example.org>: Recipient address rejected",
        }
    ]

    greylisted = scenario.delivery(capsys, "C00001")
    assert (greylisted["state"], greylisted["settled"]) == ("sent", None)
    assert [(a["at"], a["smtp_code"]) for a in greylisted["attempt_log"]] == [
        (at(STEPS[0]), 450),
        (at(STEPS[1]), 250),
    ]


def test_why_says_until_when_and_why_a_held_one_waits_and_why_an_excluded_one_was_left_out(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    held = scenario.delivery(capsys, "C00004")
    assert held["state"] == "held"
    # 09:00 in Auckland (UTC+13 in November) is 20:00 UTC.
    assert (held["held_until"], held["held_because"]) == (
        "2026-11-23T20:00:00+00:00",
        "quiet_hours",
    )
    assert held["attempt_log"] == [] and held["settled"] is None
    excluded = scenario.delivery(capsys, "C00005")
    assert excluded["state"] == "excluded"
    assert [r["code"] for r in excluded["reasons"]] == ["contact_email_not_allowed"]
    text = scenario.cli(capsys, "why", "C00004", "--at", AT)
    deliveries = text.split("Deliveries (newest run first):")[1].split("Decisions at")[0]
    assert "held · until 2026-11-23 20:00 UTC (09:00 in Pacific/Auckland)" in deliveries
    assert "quiet hours in the customer's time zone" in deliveries


def test_why_shows_every_report_about_a_delivery_and_the_follow_up_it_was_handed_on_to(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    bounced = scenario.delivery(capsys, "C00000")
    assert bounced["state"] == "sent"
    [report] = bounced["outcomes"]
    assert (report["type"], report["class"], report["status"]) == ("bounce", "hard", "5.1.1")
    assert isinstance(report["report"], int) and report["reported_at"]
    assert bounced["handed_on_to"] == scenario.follow_up
    complained = scenario.delivery(capsys, "C00006")
    assert [o["type"] for o in complained["outcomes"]] == ["complaint"]
    assert complained["handed_on_to"] is None
    text = scenario.cli(capsys, "why", "C00000", "--at", AT)
    assert f"run {scenario.run_id} · inv · p0@example.org · D00000 2026-00000" in text
    assert "bounced hard 5.1.1 on 2026-11-28 · report" in text
    assert f"→ handed on to run {scenario.follow_up}" in text


def test_why_with_a_definition_says_whether_the_run_holding_the_ledger_entry_reached_them(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    def detail(customer: str) -> str:
        out = scenario.cli(capsys, "why", customer, "--definition", "inv", "--json", "--at", AT)
        [candidate] = json.loads(out)["definitions"][0]["candidates"]
        [reason] = [r for r in candidate["reasons"] if r["code"] == "already_sent"]
        return str(reason["detail"])

    run = scenario.run_id
    assert re.search(rf"by run {run}, which reached them: sent 250 2\.0\.0 Ok: queued as M\d+$",
                     detail("C00001"))  # fmt: skip
    assert detail("C00000").endswith(
        f"by run {run}, which did not reach them: sent, then bounced hard 5.1.1 on "
        f"2026-11-28 — it was handed on to run {scenario.follow_up}"
    )


def test_already_targeted_by_a_run_that_failed_names_the_follow_up_that_sends_to_them(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FixedClock(T0)
    faults = Faults(data={"p0@example.org": [THROTTLED] * 100})
    with SmtpServer(faults=faults) as server:
        doc = document(1, server.port, retry_after_seconds=[600], retry_for_seconds=3720)
        doc["definitions"][0]["dedup"] = "per_trigger"
        run_id = new_run(db, doc, clock=clock)
        for step in STEPS:
            clock.set(T0 + step)
            deliver_now(db, run_id, clock)
    capsys.readouterr()
    args = ["why", "C00000", "--definition", "inv", "--at", at(STEPS[-1]), "--db", url_of(db)]
    assert cli.main(args) == 0
    assert (
        f"by run {run_id}, which did not reach them: failed, {THROTTLED} after 6 attempts — "
        f"`run follow-up {run_id}` sends to them"
    ) in capsys.readouterr().out


def test_run_show_json_gives_each_recipient_its_attempts_settling_and_hold(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = json.loads(scenario.cli(capsys, "run", "show", str(scenario.run_id), "--json"))
    by_address = {r["address"]: r for r in shown["recipients"]}
    for row in by_address.values():
        assert {"attempt_log", "settled", "held_until", "held_because"} <= set(row)
        assert isinstance(row["attempts"], int)
    assert by_address["p3@example.org"]["settled"].startswith("gave up after 6 attempts")
    assert len(by_address["p3@example.org"]["attempt_log"]) == 6
    assert by_address["p4@example.org"]["held_because"] == "quiet_hours"
    assert by_address["p0@example.org"]["outcome"]["status"] == "5.1.1"
    bounced = json.loads(
        scenario.cli(capsys, "run", "show", str(scenario.run_id), "--json", "--outcome", "bounce")
    )
    assert [r["address"] for r in bounced["recipients"]] == ["p0@example.org"]


def test_run_show_text_says_per_recipient_what_the_json_knows_never_a_bare_no_reply(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(scenario.run_id)
    every = "pending,held,sending,sent,retrying,failed,unknown,excluded"
    text = scenario.cli(capsys, "run", "show", run, "--state", every)
    assert "(no reply)" not in text
    lines = {line.split()[1]: line for line in text.splitlines() if "@example.org" in line}
    assert re.search(
        rf"sent 250 2\.0\.0 Ok: queued as M\d+ · bounced hard 5\.1\.1 on 2026-11-28 · "
        rf"→ run {scenario.follow_up}$",
        lines["p0@example.org"],
    )
    assert "spam complaint on 2026-11-28" in lines["p6@example.org"]
    assert lines["p2@example.org"].endswith(
        f"failed · 550 5.1.1 at the first attempt · → run {scenario.follow_up}"
    )
    assert (
        "failed · gave up after 6 attempts over 1 h 02 min: the last reply 421 4.7.0"
        in (lines["p3@example.org"])
    )
    assert (
        "held · until 2026-11-23 20:00 UTC (09:00 in Pacific/Auckland)" in (lines["p4@example.org"])
    )
    assert "excluded · contact_email_not_allowed" in lines["p5@example.org"]
    assert "- contact_email_not_allowed: " in text  # its detail, on the line below
    assert "2026-11-23 11:02:00  421 4.7.0 Too many messages, try again later (settled it)" in text

    complained = scenario.cli(capsys, "run", "show", run, "--outcome", "complaint")
    assert "1 complaint:" in complained and "p6@example.org" in complained
    assert "p0@example.org" not in complained.split("1 complaint:")[1]


def test_run_show_refuses_an_unknown_outcome_naming_the_known_ones(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    args = ["run", "show", str(scenario.run_id), "--outcome", "bounced"]
    assert cli.main([*args, "--db", url_of(scenario.db)]) == 2
    assert "unknown outcome 'bounced'" in capsys.readouterr().err


def test_run_list_counts_what_is_left_to_send_not_what_was_planned(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    header, *rows = scenario.cli(capsys, "run", "list").splitlines()
    columns = header.split()  # "TO SEND" is two words here, one number below
    [row] = [r.split() for r in rows if r.split()[0] == str(scenario.run_id)]
    assert (row[columns.index("SENT")], row[columns.index("TO")]) == ("3", "1")  # C00004, held


def test_a_recipient_held_for_a_scheduled_run_says_it_waits_for_the_run_s_instant(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FixedClock(T0 - timedelta(hours=2))  # `run start --at` two hours ahead
    run_id = new_run(db, document(1, free_port()), clock=clock)
    capsys.readouterr()
    assert cli.main(["why", "C00000", "--json", "--db", url_of(db)]) == 0
    [held] = json.loads(capsys.readouterr().out)["deliveries"]
    assert (held["run"], held["state"]) == (run_id, "held")
    assert (held["held_until"], held["held_because"]) == (AT, "scheduled")


def test_an_unknown_recipient_says_it_may_have_been_delivered_and_since_when(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, rows = sent_run(db, 1, state="sending")
    lost = rows[0].updated_at + timedelta(minutes=5)
    with db.connect() as connection:
        transitions.make_unknown(connection, None, lost, run_id)
    capsys.readouterr()
    assert cli.main(["why", "C00000", "--json", "--db", url_of(db)]) == 0
    [doubt] = json.loads(capsys.readouterr().out)["deliveries"]
    assert (doubt["state"], doubt["unknown_since"]) == ("unknown", lost.isoformat())
    assert doubt["attempt_log"][0]["reply"] == transitions.LOST_ATTEMPT
    assert cli.main(["run", "show", str(run_id), "--state", "unknown", "--db", url_of(db)]) == 0
    assert f"unknown since {lost.isoformat()} · it may have been delivered" in (
        capsys.readouterr().out
    )
