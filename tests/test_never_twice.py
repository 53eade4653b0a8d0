"""Never twice across runs, and quiet hours at the moment of sending (issue 12).

Two runs of one ``per_document`` or ``per_trigger`` definition never send one
document to one address twice: planning excludes what another run holds
(rule 18, ``in_another_run``), and the transaction that marks a recipient
``sending`` refuses a key another run has sent or is sending. Quiet hours are
checked in that transaction too.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from core.clock import FixedClock, SystemClock, parse_instant
from core.delivery import queries, transitions
from core.delivery.deliver import deliver
from core.delivery.starting import create_run
from core.messages.due import Due
from core.planner.plan import make_plan
from core.storage import Database
from core.storage.models import History, MessageRun, Recipient, table_of
from core.views.run_json import run_json
from fixtures.smtp_servers import SmtpServer
from tests.conftest import load_ok
from tests.delivery_support import AT, assert_counts_match_rows, deliver_now, document, states

pytestmark = pytest.mark.timeout(180)
RUN, RECIPIENT = table_of(MessageRun), table_of(Recipient)


def per_document(count: int, port: int, **definition: Any) -> dict[str, Any]:
    doc = document(count, port)
    doc["definitions"][0]["dedup"] = "per_document"
    doc["definitions"][0].update(definition)
    return doc


def set_run_state(db: Database, run_id: int, state: str) -> None:
    with db.connect() as connection:
        connection.execute(update(RUN).where(RUN.c.id == run_id).values(state=state))


def two_runs_planned_together(db: Database, doc: dict[str, Any]) -> tuple[int, int]:
    """Two runs that both hold every document, as two runs planned at the same moment do.

    The first run is made to look ended while the second is planned, so that
    rule 18 does not exclude its recipients: what is left to stop a second
    send is the guard in the transaction that marks them `sending`.
    """
    history = table_of(History)
    load_ok(db, doc)
    first = create_run(db, "inv", parse_instant(AT), SystemClock())
    set_run_state(db, first, "completed")
    with db.connect() as connection:  # per_trigger: the targets it recorded, as yet unseen
        rows = connection.execute(select(history)).all()
        targets = [{k: v for k, v in r._asdict().items() if k != "id"} for r in rows]
        connection.execute(history.delete())
    second = create_run(db, "inv", parse_instant(AT), SystemClock())
    set_run_state(db, first, "running")
    if targets:
        with db.connect() as connection:
            connection.execute(history.insert(), targets)
    assert set(states(db, first).values()) == {"pending"}
    assert set(states(db, second).values()) == {"pending"}
    return first, second


def reasons_of(db: Database, run_id: int) -> dict[str, list[dict[str, str]]]:
    return {r["address"]: r["reasons"] for r in run_json(db, run_id)["recipients"]}


# -- rule 18 at planning ---------------------------------------------------------------


def test_a_second_run_planned_while_the_first_holds_the_documents_excludes_them(
    db: Database,
) -> None:
    doc = per_document(3, 2525)
    load_ok(db, doc)
    first = create_run(db, "inv", parse_instant(AT), SystemClock())
    plan = make_plan(db, "inv", parse_instant(AT), environ={})
    assert [c.codes() for c in plan.candidates] == [["in_another_run"]] * 3
    detail = plan.candidates[0].reasons[0].detail
    assert f"run {first}" in detail and "document D00000 to p0@example.org" in detail
    second = create_run(db, "inv", parse_instant(AT), SystemClock())
    assert set(states(db, second).values()) == {"excluded"}
    # Once the first run has ended, nothing holds them any more.
    set_run_state(db, first, "stopped")
    plan = make_plan(db, "inv", parse_instant(AT), environ={})
    assert {c.decision for c in plan.candidates} == {"included"}


def test_rule_18_follows_the_address_case_insensitively_and_only_live_recipients(
    db: Database,
) -> None:
    doc = per_document(2, 2525)
    load_ok(db, doc)
    first = create_run(db, "inv", parse_instant(AT), SystemClock())
    with db.connect() as connection:
        connection.execute(
            update(RECIPIENT)
            .where(RECIPIENT.c.run_id == first, RECIPIENT.c.address == "p0@example.org")
            .values(address="P0@Example.ORG")
        )
        # A failed recipient no longer holds its document.
        connection.execute(
            update(RECIPIENT)
            .where(RECIPIENT.c.run_id == first, RECIPIENT.c.address == "p1@example.org")
            .values(state="failed")
        )
    plan = make_plan(db, "inv", parse_instant(AT), environ={})
    decided = {c.address: c.codes() for c in plan.candidates}
    assert decided == {"p0@example.org": ["in_another_run"], "p1@example.org": []}


def test_a_none_dedup_definition_is_not_held_by_other_runs(db: Database) -> None:
    load_ok(db, document(2, 2525))  # dedup none
    create_run(db, "inv", parse_instant(AT), SystemClock())
    plan = make_plan(db, "inv", parse_instant(AT), environ={})
    assert {c.decision for c in plan.candidates} == {"included"}


def test_per_trigger_holds_the_customer(db: Database) -> None:
    doc = document(2, 2525)
    doc["definitions"][0]["dedup"] = "per_trigger"
    load_ok(db, doc)
    first = create_run(db, "inv", parse_instant(AT), SystemClock())
    plan = make_plan(db, "inv", parse_instant(AT), environ={})
    for candidate in plan.candidates:
        assert "in_another_run" in candidate.codes()
        found = next(r for r in candidate.reasons if r.code == "in_another_run")
        assert f"run {first}" in found.detail and candidate.customer in found.detail


# -- the guard when marking `sending` ------------------------------------------------------


def test_two_runs_delivered_together_send_each_document_once(db: Database) -> None:
    with SmtpServer() as server:
        first, second = two_runs_planned_together(db, per_document(12, server.port))

        async def both() -> list[Any]:
            return list(
                await asyncio.gather(
                    deliver(db, first, SystemClock(), environ={}),
                    deliver(db, second, SystemClock(), environ={}),
                )
            )

        outcomes = asyncio.run(both())
    assert {o.state for o in outcomes} == {"completed"}
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(12)}
    counts = [assert_counts_match_rows(db, run) for run in (first, second)]
    assert counts[0]["sent"] + counts[1]["sent"] == 12
    assert counts[0]["excluded"] + counts[1]["excluded"] == 12
    for run, other in ((first, second), (second, first)):
        run_states = states(db, run)
        reasons = reasons_of(db, run)
        for address, state in run_states.items():
            if state == "excluded":
                (reason,) = reasons[address]
                assert reason["code"] == "in_another_run"
                assert reason["detail"].startswith(f"run {other} ")
                assert address in reason["detail"]


def test_a_document_the_other_run_sent_is_not_sent_again(db: Database) -> None:
    with SmtpServer() as server:
        first, second = two_runs_planned_together(db, per_document(3, server.port))
        assert deliver_now(db, first).state == "completed"
        assert deliver_now(db, second).state == "completed"
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(3)}
    assert set(states(db, second).values()) == {"excluded"}
    assert assert_counts_match_rows(db, second)["excluded"] == 3
    detail = reasons_of(db, second)["p1@example.org"][0]["detail"]
    assert detail == f"run {first} has sent document D00001 to p1@example.org"


def test_a_document_whose_send_failed_in_the_other_run_may_be_sent(db: Database) -> None:
    with SmtpServer() as server:
        first, second = two_runs_planned_together(db, per_document(2, server.port))
        due = {d.address: d for d in _load_due(db, first)}
        with db.connect() as connection:
            marked = transitions.mark_sending(
                connection, first, [due["p0@example.org"]], SystemClock().now()
            )
            assert marked == {due["p0@example.org"].id}
            transitions.record_results(
                connection,
                first,
                "inv",
                [transitions.Result(due["p0@example.org"].id, "failed", customer_id="C00000")],
                SystemClock().now(),
            )
        set_run_state(db, first, "stopped")
        assert deliver_now(db, second).state == "completed"
    assert states(db, second) == {"p0@example.org": "sent", "p1@example.org": "sent"}


def test_the_ledger_counts_at_the_moment_of_sending(db: Database) -> None:
    """A send recorded in the history after the run was planned (another run's) stops it."""
    with SmtpServer() as server:
        first, second = two_runs_planned_together(db, per_document(2, server.port))
        with db.connect() as connection:
            connection.execute(update(RUN).where(RUN.c.id == first).values(state="completed"))
            connection.execute(
                History.__table__.insert().values(
                    definition_id="inv",
                    customer_id="C00000",
                    address="p0@example.org",
                    address_lower="p0@example.org",
                    document_id="D00000",
                    offset_days=None,
                    at=parse_instant(AT),
                    run_id=first,
                    fingerprint="test-entry",
                )
            )
        assert deliver_now(db, second).state == "completed"
    assert server.recipients() == {"p1@example.org": 1}
    (reason,) = reasons_of(db, second)["p0@example.org"]
    assert reason["code"] == "in_another_run" and reason["detail"].startswith(f"run {first} ")


def _load_due(db: Database, run_id: int) -> list[Due]:
    with db.connect() as connection:
        return queries.load_due(connection, run_id, SystemClock().now(), 1000)


def test_two_transactions_marking_one_key_are_serialised(db: Database) -> None:
    """The second waits for the first to commit, then finds the key taken."""
    first, second = two_runs_planned_together(db, per_document(1, 2525))
    (mine,) = _load_due(db, first)
    (theirs,) = _load_due(db, second)
    entered, finished = threading.Event(), threading.Event()
    outcome: list[set[int]] = []

    def other() -> None:
        with db.connect() as connection:
            entered.set()
            outcome.append(
                transitions.mark_sending(connection, second, [theirs], SystemClock().now())
            )
        finished.set()

    connection = db.engine.connect()
    try:
        transaction = connection.begin()
        assert transitions.mark_sending(connection, first, [mine], SystemClock().now()) == {mine.id}
        thread = threading.Thread(target=other)
        thread.start()
        assert entered.wait(30)
        # While the first has not committed, the second cannot decide.
        assert not finished.wait(0.5)
        transaction.commit()
    finally:
        connection.close()
    thread.join(60)
    assert outcome == [set()]
    assert states(db, first) == {"p0@example.org": "sending"}
    assert states(db, second) == {"p0@example.org": "excluded"}
    assert_counts_match_rows(db, second)


# -- quiet hours at the moment of sending --------------------------------------------------


def test_a_run_delivered_inside_quiet_hours_holds_everything_until_they_end(
    db: Database,
) -> None:
    with SmtpServer() as server:
        doc = document(3, server.port)
        doc["definitions"][0]["quiet_hours"] = {"start": "21:00", "end": "09:00"}
        load_ok(db, doc)
        planned = create_run(db, "inv", parse_instant("2026-11-23T15:00:00+00:00"), SystemClock())
        assert set(states(db, planned).values()) == {"pending"}
        clock = FixedClock(parse_instant("2026-11-23T21:00:00+00:00"))
        assert deliver_now(db, planned, clock).state == "waiting"
        assert set(states(db, planned).values()) == {"held"}
        assert server.recipients() == {}
        shown = run_json(db, planned)["recipients"]
        assert {r["send_after"] for r in shown} == {"2026-11-24T09:00:00+00:00"}
        assert_counts_match_rows(db, planned)
        clock.set(parse_instant("2026-11-24T09:00:00+00:00"))
        assert deliver_now(db, planned, clock).state == "completed"
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(3)}


class CrossingClock:
    """20:59:59 until ``after`` messages have reached the server, then 21:00:00."""

    def __init__(self, server: SmtpServer, after: int) -> None:
        self.server, self.after = server, after
        self.crossed: datetime | None = None

    def now(self) -> datetime:
        if self.crossed is None and len(self.server.messages()) >= self.after:
            self.crossed = parse_instant("2026-11-23T21:00:00+00:00")
        return self.crossed or parse_instant("2026-11-23T20:59:59+00:00")


def test_quiet_hours_that_begin_during_a_run_hold_the_rest(db: Database) -> None:
    with SmtpServer() as server:
        doc = document(30, server.port, max_connections=1)
        doc["definitions"][0]["quiet_hours"] = {"start": "21:00", "end": "09:00"}
        load_ok(db, doc)
        run_id = create_run(db, "inv", parse_instant("2026-11-23T15:00:00+00:00"), SystemClock())
        clock = CrossingClock(server, after=2)
        assert deliver_now(db, run_id, clock).state == "waiting"
        sent_before = len(server.messages())
    assert clock.crossed is not None
    counts = assert_counts_match_rows(db, run_id)
    # At most the group marked `sending` before 21:00 went out (2 × max_connections).
    assert 2 <= counts["sent"] == sent_before <= 4
    assert counts["held"] == 30 - counts["sent"]
    held = [r for r in run_json(db, run_id)["recipients"] if r["state"] == "held"]
    assert {r["send_after"] for r in held} == {"2026-11-24T09:00:00+00:00"}


# -- a run planned for a later instant -------------------------------------------------------


def test_a_run_planned_for_a_later_instant_sends_nothing_before_it(db: Database) -> None:
    clock = FixedClock(parse_instant("2026-11-28T09:00:00+00:00"))
    at = parse_instant("2026-11-30T10:00:00+00:00")
    with SmtpServer() as server:
        doc = document(3, server.port)
        doc["definitions"][0]["quiet_hours"] = {"start": "21:00", "end": "09:00"}
        doc["customers"][0]["timezone"] = "Australia/Sydney"  # 21:00 there at `at`: quiet
        load_ok(db, doc)
        run_id = create_run(db, "inv", at, clock)
        shown = {r["address"]: r for r in run_json(db, run_id)["recipients"]}
        assert {r["state"] for r in shown.values()} == {"held"}
        assert shown["p1@example.org"]["send_after"] == "2026-11-30T10:00:00+00:00"
        # Held until its quiet hours end, which is later than `at`.
        assert shown["p0@example.org"]["send_after"] == "2026-11-30T22:00:00+00:00"
        assert deliver_now(db, run_id, clock).state == "waiting"
        assert server.recipients() == {}
        clock.set(at)
        assert deliver_now(db, run_id, clock).state == "waiting"
        assert set(server.recipients()) == {"p1@example.org", "p2@example.org"}
        clock.set(parse_instant("2026-11-30T22:00:00+00:00"))
        assert deliver_now(db, run_id, clock).state == "completed"
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(3)}
    assert_counts_match_rows(db, run_id)


def test_a_run_planned_for_now_or_a_moment_ago_is_not_held(db: Database) -> None:
    clock = FixedClock(parse_instant("2026-11-28T09:00:00+00:00"))
    load_ok(db, document(2, 2525))
    for at in ("2026-11-28T09:00:03+00:00", "2026-11-28T08:00:00+00:00"):
        run_id = create_run(db, "inv", parse_instant(at), clock)
        assert set(states(db, run_id).values()) == {"pending"}


def test_plan_and_why_show_the_run_that_holds_a_candidate(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    import json

    from tui import cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    source = tmp_path / "in.json"
    source.write_text(json.dumps(per_document(2, 2525)))
    assert cli.main(["import", str(source), "--db", url]) == 0
    assert cli.main(["run", "start", "inv", "--detach", "--db", url]) == 0
    capsys.readouterr()

    assert cli.main(["plan", "inv", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "in_another_run" in out and "Wait for that run to end, or stop it." in out
    assert cli.main(["plan", "inv", "--json", "--db", url]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["summary"]["by_reason"] == {"in_another_run": 2}

    assert cli.main(["why", "C00001", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "in_another_run" in out
    assert "run 1 of this definition has not ended and still holds document D00001" in out
    assert cli.main(["why", "C00001", "--json", "--db", url]) == 0
    why = json.dumps(json.loads(capsys.readouterr().out))
    assert "in_another_run" in why and "run 1 of this definition" in why


@pytest.mark.postgresql
def test_two_workers_racing_on_postgresql_send_each_document_once(
    postgresql_db: Database,
) -> None:
    """Two workers (sharing both runs, as on two machines) deliver two runs planned together."""
    from core.run_info import get_run
    from core.worker import work

    db = postgresql_db
    total = 40
    with SmtpServer() as server:
        doc = document(total, server.port, max_connections=2)
        doc["definitions"][0]["dedup"] = "per_document"
        first, second = two_runs_planned_together(db, doc)

        async def race() -> None:
            stop = asyncio.Event()
            workers = [
                asyncio.create_task(work(db, SystemClock(), stop, environ={}, poll_seconds=0.2))
                for _ in range(2)
            ]
            try:
                for _ in range(1200):  # at most two minutes
                    runs = [get_run(db, run) for run in (first, second)]
                    if all(r.state == "completed" for r in runs):
                        break
                    if any(w.done() for w in workers):
                        break
                    await asyncio.sleep(0.1)
            finally:
                stop.set()
                await asyncio.gather(*workers)

        asyncio.run(race())
    assert [get_run(db, run).state for run in (first, second)] == ["completed", "completed"]
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(total)}
    counts = [assert_counts_match_rows(db, run) for run in (first, second)]
    assert counts[0]["sent"] + counts[1]["sent"] == total
    assert counts[0]["excluded"] + counts[1]["excluded"] == total


def test_per_trigger_sends_every_address_of_a_customer_in_one_run_never_in_two(
    db: Database,
) -> None:
    with SmtpServer() as server:
        doc = document(2, server.port)
        doc["definitions"][0]["dedup"] = "per_trigger"
        doc["customers"][0]["contacts"][0]["addresses"].append(
            {"address": "second@example.org", "key": "billing"}
        )
        first, second = two_runs_planned_together(db, doc)
        assert len(states(db, first)) == 3
        assert deliver_now(db, first).state == "completed"
        assert deliver_now(db, second).state == "completed"
    assert server.recipients() == {
        "p0@example.org": 1,
        "second@example.org": 1,
        "p1@example.org": 1,
    }
    assert set(states(db, first).values()) == {"sent"}
    assert set(states(db, second).values()) == {"excluded"}
    for reasons in reasons_of(db, second).values():
        assert [r["code"] for r in reasons] == ["in_another_run"]
        assert reasons[0]["detail"].startswith(f"run {first} has sent ")
