"""``msgrun run follow-up``: exactly those a run did not reach, planned again, never twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select, update

from core.clock import SystemClock
from core.delivery import transitions
from core.run_info import get_run
from core.storage import Database
from core.storage.models import Recipient, table_of
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import load_ok, url_of
from tests.delivery_support import (
    assert_counts_match_rows,
    deliver_now,
    document,
    fabricate_recipient_state,
    new_run,
    states,
)
from tui import cli

REFUSED = "550 5.7.1 relaying denied"
UNKNOWN_USER = "550 5.1.1 no such user"


def follow_up(capsys: pytest.CaptureFixture[str], db: Database, *args: str) -> tuple[int, str, str]:
    code = cli.main(["run", "follow-up", *args, "--db", url_of(db)])
    out, err = capsys.readouterr()
    return code, out, err


def recipients(db: Database, run_id: int) -> dict[str, Any]:
    table = table_of(Recipient)
    with db.connect() as connection:
        rows = connection.execute(select(table).where(table.c.run_id == run_id)).all()
    return {r.address: r for r in rows}


def first_run(
    db: Database, server: SmtpServer, count: int = 4, **changes: Any
) -> tuple[int, dict[str, Any]]:
    doc = document(count, server.port)
    doc["definitions"][0].update(changes)
    run_id = new_run(db, doc)
    deliver_now(db, run_id)
    return run_id, doc


def test_a_follow_up_sends_exactly_the_failed_ones_and_never_twice(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = Faults(rcpt={"p1@example.org": [REFUSED], "p2@example.org": [UNKNOWN_USER]})
    with SmtpServer(faults=faults) as server:
        run_id, _ = first_run(db, server)
        assert states(db, run_id) == {
            "p0@example.org": "sent",
            "p1@example.org": "failed",
            "p2@example.org": "failed",
            "p3@example.org": "sent",
        }
        # The server is fixed (each fault list is used up); p2 is suppressed (5.1.1).
        code, out, err = follow_up(capsys, db, str(run_id), "--detach")
        assert code == 0, err
        new_id = int(out.splitlines()[0])
        assert f"follows up run {run_id}" in err
        planned = recipients(db, new_id)
        assert sorted(planned) == ["p1@example.org", "p2@example.org"]
        assert planned["p1@example.org"].state == "pending"
        assert planned["p2@example.org"].state == "excluded"
        assert [r["code"] for r in planned["p2@example.org"].reasons] == ["suppressed"]
        assert "hard_bounce" in planned["p2@example.org"].reasons[0]["detail"]
        deliver_now(db, new_id)
        assert server.count("p1@example.org") == 1
        assert server.count("p2@example.org") == 0
        assert get_run(db, new_id).follow_up_of == run_id
        assert_counts_match_rows(db, new_id)

        # The chosen are marked handed on in the followed run.
        handed = {a: r.handed_on_to for a, r in recipients(db, run_id).items()}
        assert handed == {
            "p0@example.org": None,
            "p1@example.org": new_id,
            "p2@example.org": new_id,
            "p3@example.org": None,
        }

        # Following up the same run again sends nobody a second message.
        code, out, err = follow_up(capsys, db, str(run_id), "--detach")
        assert code == 0, err
        again = int(out.splitlines()[0])
        second = recipients(db, again)
        assert {a: r.state for a, r in second.items()} == {
            "p1@example.org": "excluded",
            "p2@example.org": "excluded",
        }
        codes = [r["code"] for r in second["p1@example.org"].reasons]
        assert codes == ["already_sent"]
        assert f"follow-up run {new_id}" in second["p1@example.org"].reasons[0]["detail"]
        assert get_run(db, again).state == "completed"
        deliver_now(db, again)
        assert server.count("p1@example.org") == 1


def test_a_corrected_address_is_used_as_it_is_now(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpServer(faults=Faults(rcpt={"p1@example.org": [REFUSED, REFUSED]})) as server:
        run_id, doc = first_run(sqlite_db, server, count=2)
        doc["customers"][1]["contacts"][0]["addresses"] = [
            {"address": "p1.new@example.org", "key": "billing"}
        ]
        load_ok(sqlite_db, doc)
        code, out, err = follow_up(capsys, sqlite_db, str(run_id), "--detach")
        assert code == 0, err
        new_id = int(out.splitlines()[0])
        planned = recipients(sqlite_db, new_id)
        assert list(planned) == ["p1.new@example.org"]
        assert planned["p1.new@example.org"].document_id == "D00001"
        deliver_now(sqlite_db, new_id)
        assert server.count("p1.new@example.org") == 1


def test_billing_rules_are_judged_at_the_followed_runs_instant_and_its_ledger_does_not_count(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpServer(faults=Faults(rcpt={"p0@example.org": [REFUSED]})) as server:
        doc = document(2, server.port)
        for d in doc["documents"]:
            d.update(billing_method="card", due_date="2026-11-23")
        doc["definitions"][0].update(use_billing_rules=True, dedup="per_document")
        run_id = new_run(db, doc)  # planned on the due date: offset 0, a send rule
        deliver_now(db, run_id)
        # A follow-up today (days after the due date) still answers offset 0;
        # and the sent one, chosen by state, is not excluded by the run's own ledger entry.
        code, out, err = follow_up(capsys, db, str(run_id), "--state", "failed,sent", "--detach")
        assert code == 0, err
        planned = recipients(db, int(out.splitlines()[0]))
        assert {a: (r.state, r.offset_days) for a, r in planned.items()} == {
            "p0@example.org": ("pending", 0),
            "p1@example.org": ("pending", 0),
        }


def test_unknown_is_taken_only_when_named_and_restart_then_skips_it(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpServer() as server:
        run_id, _ = first_run(sqlite_db, server, count=2)
        table = table_of(Recipient)
        with sqlite_db.connect() as connection:
            ids = (
                connection.execute(select(table.c.id).where(table.c.address == "p1@example.org"))
                .scalars()
                .all()
            )
            fabricate_recipient_state(connection, run_id, list(ids), "sent", "unknown")
            connection.execute(update(table).where(table.c.id.in_(ids)).values(attempts=1))
        code, _, err = follow_up(capsys, sqlite_db, str(run_id))
        assert code == 2 and "no recipient of run" in err  # unknown is not taken by default
        code, _, err = follow_up(capsys, sqlite_db, str(run_id), "--state", "unknown")
        assert code == 0, err
        assert server.count("p1@example.org") == 2  # the operator asked for it
        # The followed run's --resend-unknown does not send it a third time, and
        # run show says so: the recipient is marked handed on, no hint offers it.
        with sqlite_db.connect() as connection:
            assert transitions.resend_unknown(connection, run_id, SystemClock().now()) == 0
        assert (
            cli.main(["run", "show", str(run_id), "--state", "unknown", "--db", url_of(sqlite_db)])
            == 0
        )
        shown, _ = capsys.readouterr()
        assert f"it may have been delivered · → run {run_id + 1}" in shown
        assert "--resend-unknown sends them again" not in shown


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--state", "pending"], "not settled"),
        (["--state", "sent,nope"], "unknown state 'nope'"),
        (["--outcome", "bounced"], "unknown outcome"),
        (["--state", "excluded"], "no recipient of run"),
    ],
)
def test_bad_filters_exit_2_and_create_nothing(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    with SmtpServer() as server:
        run_id, _ = first_run(sqlite_db, server, count=1)
    code, out, err = follow_up(capsys, sqlite_db, str(run_id), *args)
    assert (code, out) == (2, "") and words in err
    assert cli.main(["run", "show", str(run_id + 1), "--db", url_of(sqlite_db)]) == 2


def test_a_run_still_running_cannot_be_followed_up(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str], minimal: dict[str, Any]
) -> None:
    run_id = new_run(sqlite_db, minimal)
    code, out, err = follow_up(capsys, sqlite_db, str(run_id), "--state", "excluded")
    assert code == 1 and out == "" and "is running" in err


def test_run_show_json_names_what_a_run_follows_up(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpServer(faults=Faults(rcpt={"p0@example.org": [REFUSED]})) as server:
        run_id, _ = first_run(sqlite_db, server, count=1)
        code, out, err = follow_up(capsys, sqlite_db, str(run_id))
        assert code == 0, err
        new_id = int(out.splitlines()[0])
    assert cli.main(["run", "show", str(new_id), "--json", "--db", url_of(sqlite_db)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["follow_up_of"] == run_id and shown["state"] == "completed"
    assert cli.main(["run", "show", str(run_id), "--json", "--db", url_of(sqlite_db)]) == 0
    followed = json.loads(capsys.readouterr().out)
    assert followed["follow_up_of"] is None
    assert followed["recipients"][0]["handed_on_to"] == new_id


def test_a_preview_counts_what_a_follow_up_would_plan_and_writes_nothing(
    sqlite_db: Database,
) -> None:
    from core.follow_up import preview_follow_up
    from core.views.export_rows import Selection

    faults = Faults(rcpt={"p1@example.org": [REFUSED], "p2@example.org": [UNKNOWN_USER]})
    with SmtpServer(faults=faults) as server:
        run_id, _ = first_run(sqlite_db, server)
    preview = preview_follow_up(sqlite_db, run_id, Selection(), SystemClock().now())
    assert preview.chosen == 2
    assert preview.decisions == {"included": 1, "deferred": 0, "excluded": 1}
    assert preview.by_reason == {"suppressed": 1}
    assert {a: r.handed_on_to for a, r in recipients(sqlite_db, run_id).items()} == dict.fromkeys(
        ["p0@example.org", "p1@example.org", "p2@example.org", "p3@example.org"]
    )


def test_run_list_says_what_each_run_follows_and_counts_the_excluded_apart(
    sqlite_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpServer(faults=Faults(rcpt={"p0@example.org": [REFUSED]})) as server:
        run_id, _ = first_run(sqlite_db, server, count=2)
        code, _, err = follow_up(capsys, sqlite_db, str(run_id))
        assert code == 0, err
    assert cli.main(["run", "list", "--db", url_of(sqlite_db)]) == 0
    header, newest, oldest = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "RUN",
        "DEFINITION",
        "STATE",
        "CREATED",
        "SENT",
        "TO",
        "SEND",
        "FAILED",
        "UNKNOWN",
        "EXCLUDED",
    ]
    assert f"inv (follows {run_id})" in newest
    assert oldest.split()[0] == str(run_id)


def test_follow_ups_of_follow_ups_never_send_one_message_twice(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run 2 follows up run 1 and fails p1 again; run 3 follows up run 1 once more and
    holds p1; run 4, a follow-up of run 2, must not hold p1 too (dedup none)."""
    faults = Faults(rcpt={"p1@example.org": [REFUSED, REFUSED]})
    with SmtpServer(faults=faults) as server:
        first, _ = first_run(db, server, count=2, dedup="none")
        code, out, err = follow_up(capsys, db, str(first))
        second = int(out.splitlines()[0])
        assert states(db, second) == {"p1@example.org": "failed"}
        code, out, err = follow_up(capsys, db, str(first), "--detach")
        assert code == 0, err
        third = int(out.splitlines()[0])
        assert states(db, third) == {"p1@example.org": "pending"}
        code, out, err = follow_up(capsys, db, str(second), "--detach")
        assert code == 0, err
        fourth = int(out.splitlines()[0])
        held = recipients(db, fourth)["p1@example.org"]
        assert held.state == "excluded"
        assert [r["code"] for r in held.reasons] == ["in_another_run"]
        assert f"follow-up run {third} holds it" in held.reasons[0]["detail"]
        deliver_now(db, third)
        deliver_now(db, fourth)
        assert server.count("p1@example.org") == 1  # refused by runs 1 and 2, sent by 3
    assert states(db, third) == {"p1@example.org": "sent"}


def test_a_follow_up_at_a_past_instant_is_refused_and_creates_nothing(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = Faults(rcpt={"p1@example.org": [REFUSED]})
    with SmtpServer(faults=faults) as server:
        first, _ = first_run(db, server, count=2)
    code, out, err = follow_up(capsys, db, str(first), "--at", "2020-01-01T00:00:00+00:00")
    assert code == 2 and out == ""
    assert "is in the past" in err
    assert get_run(db, first).follow_up_of is None
    with db.connect() as connection:
        runs = connection.execute(select(table_of(Recipient).c.run_id).distinct()).scalars()
        assert list(runs) == [first]


def test_two_follow_ups_made_at_the_same_moment_never_both_take_a_recipient(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process follows the run up, whole, after this one has planned and
    before it writes (each planned seeing no other follow-up): this one finds the
    marks changed, plans again, sees the other, and leaves it the recipient —
    whatever the definition's dedup. (Without the check both would send p1.) The
    family's lock is left out here (it makes them one after the other): this is the
    check behind it."""
    import threading

    from core import follow_up as module
    from core.views.export_rows import Selection

    monkeypatch.setattr(module, "lock_family", lambda connection, run_id: None)

    faults = Faults(rcpt={"p1@example.org": [REFUSED]})
    with SmtpServer(faults=faults) as server:
        first, _ = first_run(db, server, count=2, dedup="none")
    planning = module.plan_again
    other: list[int] = []
    calls: list[int] = []

    def plan_while_another_follows_up(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        planned = planning(*args, **kwargs)
        if len(calls) == 1:  # this process has planned: the other one goes now, whole
            thread = threading.Thread(
                target=lambda: other.append(
                    module.start_follow_up(
                        db, first, Selection(), SystemClock().now(), SystemClock()
                    )
                )
            )
            thread.start()
            thread.join(60)
            assert other, "the other follow-up did not finish"
        return planned

    monkeypatch.setattr(module, "plan_again", plan_while_another_follows_up)
    mine = module.start_follow_up(db, first, Selection(), SystemClock().now(), SystemClock())
    theirs = other[0]
    assert states(db, theirs) == {"p1@example.org": "pending"}
    taken = recipients(db, mine)["p1@example.org"]
    assert taken.state == "excluded"
    assert [r["code"] for r in taken.reasons] == ["in_another_run"]
    # Handed on to the follow-up that has its message, not to the one that excluded it.
    assert recipients(db, first)["p1@example.org"].handed_on_to == theirs
    assert_counts_match_rows(db, mine)
    assert len(calls) == 3  # mine, the other's, and mine again once it found the marks changed
