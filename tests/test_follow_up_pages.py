"""A follow-up reads its run and plans again a page at a time, and the planner reads
the ledger with each page of customers (issue 29): the pages change nothing of what
is planned, and four times the recipients, or the customers and their history, take
no more memory."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from core import follow_up
from core.clock import FixedClock, SystemClock, parse_instant
from core.delivery import starting
from core.delivery.starting import create_run
from core.planner import load
from core.planner.load import load_definition, load_organisation
from core.planner.plan import Summary, iter_plan, make_plan
from core.planner.report import candidate_json
from core.storage import Database, open_database
from core.storage.ledger import history_row, write_history
from core.storage.models import Document, MessageRun, Recipient, table_of
from core.views.export_rows import Selection
from fixtures.generate import generate_document
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import load_ok
from tests.delivery_support import deliver_now, document, new_run

AT = parse_instant("2026-11-23T10:00:00+11:00")
CLOCK = FixedClock(AT)
RUN, RECIPIENT = table_of(MessageRun), table_of(Recipient)
# Every settled recipient: the excluded and those made failed below.
EVERYONE = Selection(states=("failed", "excluded", "sent"))


def ended_run(db: Database, customers: int, definition: str = "invoice-email") -> int:
    """A run of a generated organisation, ended: every recipient it would have sent
    failed, so a follow-up chooses them all."""
    load_ok(db, generate_document(customers, seed=7))
    run_id = create_run(db, definition, AT, CLOCK, started_by="t")
    with db.connect() as connection:
        connection.execute(
            update(RECIPIENT)
            .where(RECIPIENT.c.run_id == run_id, RECIPIENT.c.state != "excluded")
            .values(state="failed")
        )
        connection.execute(update(RUN).where(RUN.c.id == run_id).values(state="completed"))
    return run_id


def replanned_json(db: Database, run_id: int) -> tuple[list[int], list[dict[str, Any]]]:
    """Every chosen recipient's id, and every candidate planned again, in order."""
    chosen: list[int] = []
    planned: list[dict[str, Any]] = []
    with db.connect() as connection:
        for page, replanned in follow_up.replanned(connection, run_id, EVERYONE, AT):
            chosen += [c.id for c in page]
            planned += [candidate_json(c) for c in replanned.candidates]
    return chosen, planned


@pytest.mark.parametrize("definition", ["invoice-email", "service-reminder"])
def test_pages_of_a_few_recipients_plan_what_one_page_plans(
    db: Database, monkeypatch: pytest.MonkeyPatch, definition: str
) -> None:
    run_id = ended_run(db, 40, definition)
    whole = replanned_json(db, run_id)
    with db.connect() as connection:
        total = connection.execute(
            select(func.count()).where(RECIPIENT.c.run_id == run_id)
        ).scalar_one()
    assert len(whole[0]) == total > 40  # all of them, some customers several times
    monkeypatch.setattr(follow_up, "PAGE", 3)  # a customer's recipients often straddle two
    monkeypatch.setattr(load, "PAGE", 2)
    assert replanned_json(db, run_id) == whole
    new_id = follow_up.start_follow_up(db, run_id, EVERYONE, AT, CLOCK, started_by="t")
    with db.connect() as connection:
        handed = connection.execute(
            select(func.count()).where(
                RECIPIENT.c.run_id == run_id, RECIPIENT.c.handed_on_to == new_id
            )
        ).scalar_one()
        written = connection.execute(
            select(RECIPIENT.c.customer_id, RECIPIENT.c.address, RECIPIENT.c.document_id)
            .where(RECIPIENT.c.run_id == new_id)
            .order_by(RECIPIENT.c.position)
        ).all()
    assert handed == total
    assert [tuple(row) for row in written] == [
        (c["customer"], c["address"], c.get("document")) for c in whole[1]
    ]


def follow_up_peak(db: Database, run_id: int) -> int:
    tracemalloc.start()
    try:
        preview = follow_up.preview_follow_up(db, run_id, EVERYONE, AT)
        follow_up.start_follow_up(db, run_id, EVERYONE, AT, CLOCK, started_by="t")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert preview.chosen > 0
    return peak


def test_following_up_four_times_the_recipients_takes_no_more_memory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow_up, "PAGE", 80)  # customers: some 200 recipients a page
    monkeypatch.setattr(load, "PAGE", 50)
    monkeypatch.setattr(starting, "INSERT_BATCH", 256)
    peaks = []
    # The first warms statements and caches (the due dates' days, the driver's
    # statements): they fill up to about 600 customers, and stay.
    for customers in (600, 600, 2400):
        db = open_database(f"sqlite:///{tmp_path}/c{customers}-{len(peaks)}.db")
        peaks.append(follow_up_peak(db, ended_run(db, customers)))
        db.dispose()
    small, large = peaks[1], peaks[2]
    # A page's recipients and the collector's timing move the peak by some hundreds of
    # KiB; holding every recipient (as the code before did) added some 10 MiB here.
    assert large < small + 1024 * 1024, (small, large)


def with_history(db: Database, customers: int, per_document: int) -> None:
    """A generated organisation whose every invoice was sent ``per_document`` times
    before (on other days): a ledger that grows with every run."""
    load_ok(db, generate_document(customers, seed=7))
    document = table_of(Document)
    with db.connect() as connection:
        invoices = connection.execute(
            select(document.c.id, document.c.customer_id).where(document.c.kind == "invoice")
        ).all()
        for n in range(per_document):
            write_history(
                connection,
                [
                    history_row(
                        definition_id="invoice-email",
                        customer_id=customer_id,
                        address=f"old-{n}@example.org",
                        document_id=document_id,
                        offset_days=-n,
                        at=AT - timedelta(days=30 * (n + 1)),
                        run_id=None,
                    )
                    for document_id, customer_id in invoices
                ],
            )


def plan_peak(db: Database) -> int:
    tracemalloc.start()
    try:
        with db.connect() as connection:
            definition = load_definition(connection, "invoice-email")
            summary = Summary()
            for _ in iter_plan(connection, load_organisation(connection), definition, AT, summary):
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.by_reason["already_sent"] > 0
    return peak


def test_planning_four_times_the_customers_and_their_history_takes_no_more_memory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger is read a page of customers at a time, as they are."""
    monkeypatch.setattr(load, "PAGE", 50)
    peaks = []
    for customers in (600, 600, 2400):  # the first warms statements and caches
        db = open_database(f"sqlite:///{tmp_path}/h{customers}-{len(peaks)}.db")
        with_history(db, customers, per_document=4)
        peaks.append(plan_peak(db))
        db.dispose()
    small, large = peaks[1], peaks[2]
    # Holding the history of every send (as the code before did) added some 11 MiB here.
    assert large < small + 1024 * 1024, (small, large)


# -- with a ledger: a followed run that sent ------------------------------------------

REFUSED = "550 5.7.1 relaying denied"


def sent_run(db: Database, count: int, refused: int, **definition: Any) -> int:
    """A run of ``count`` customers delivered: the first ``refused`` failed, the rest sent
    (each send in the ledger)."""
    faults = Faults(rcpt={f"p{i}@example.org": [REFUSED] for i in range(refused)})
    with SmtpServer(faults=faults) as server:
        doc = document(count, server.port)
        doc["definitions"][0].update(definition)
        if definition.get("kind") == "broadcast":
            doc["documents"] = []
            doc["definitions"][0]["template"] = {"subject": "News", "text": "Hello"}
        run_id = new_run(db, doc)
        deliver_now(db, run_id)
    return run_id


def pending_or_codes(db: Database, run_id: int) -> dict[str, Any]:
    with db.connect() as connection:
        rows = connection.execute(
            select(RECIPIENT.c.address, RECIPIENT.c.state, RECIPIENT.c.reasons).where(
                RECIPIENT.c.run_id == run_id
            )
        ).all()
    return {
        r.address: r.state if r.state != "excluded" else [x["code"] for x in r.reasons]
        for r in rows
    }


def marks(db: Database, run_id: int) -> dict[str, int | None]:
    """Each recipient of the run that was handed on, and to which run."""
    with db.connect() as connection:
        rows = connection.execute(
            select(RECIPIENT.c.address, RECIPIENT.c.handed_on_to).where(
                RECIPIENT.c.run_id == run_id, RECIPIENT.c.handed_on_to.is_not(None)
            )
        ).all()
    return {r.address: r.handed_on_to for r in rows}


def test_a_paged_follow_up_of_a_broadcast_does_not_count_the_followed_runs_own_sends(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """per_document on a kind without documents: its ledger matches by address and is read
    whole, once; what the followed run itself sent still does not count against those
    chosen again, page after page."""
    run_id = sent_run(db, 3, 1, kind="broadcast", dedup="per_document")
    with db.connect() as connection:
        connection.execute(update(RUN).where(RUN.c.id == run_id).values(state="completed"))
    monkeypatch.setattr(follow_up, "PAGE", 1)
    monkeypatch.setattr(load, "PAGE", 1)
    new_id = follow_up.start_follow_up(
        db, run_id, Selection(states=("failed", "sent")), SystemClock().now(), SystemClock()
    )
    assert pending_or_codes(db, new_id) == {
        "p0@example.org": "pending",
        "p1@example.org": "pending",
        "p2@example.org": "pending",
    }


def test_rule_18_finds_an_address_another_run_holds_for_another_customer_on_any_page(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kind without documents under per_document: what another run holds is matched by
    address whoever's, so it is read whole, not with the page's customers."""
    doc = document(2, 2525)
    doc["documents"] = []
    doc["definitions"][0].update(kind="broadcast", dedup="per_document")
    doc["definitions"][0]["template"] = {"subject": "News", "text": "Hello"}
    doc["customers"][0]["contacts"][0]["addresses"][0]["address"] = "shared@example.org"
    first = new_run(db, doc)
    doc["customers"][1]["contacts"][0]["addresses"][0]["address"] = "shared@example.org"
    load_ok(db, doc)  # the second customer has the address now too
    monkeypatch.setattr(load, "PAGE", 1)
    plan = make_plan(db, "inv", SystemClock().now(), environ={})
    assert [(c.customer, c.codes()) for c in plan.candidates] == [
        ("C00000", ["in_another_run"]),
        ("C00001", ["in_another_run"]),
    ]
    assert f"run {first}" in plan.candidates[1].reasons[0].detail


def test_a_follow_up_made_meanwhile_is_seen_on_a_later_page_and_this_one_plans_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two follow-ups of one run, the family's lock left out (``lock_family``: it makes
    them one after the other): the other one is made while this one is between pages
    (PostgreSQL's reads see what it committed). This one finds recipients handed on to
    a run it did not know, plans again, and leaves them to the other: none is taken
    twice."""
    import threading

    monkeypatch.setattr(follow_up, "lock_family", lambda connection, run_id: None)

    run_id = sent_run(db, 6, 2)
    monkeypatch.setattr(follow_up, "PAGE", 1)
    planning = follow_up.plan_again
    other: list[int] = []

    def plan_while_another_follows_up(*args: Any, **kwargs: Any) -> Any:
        planned = planning(*args, **kwargs)
        if not other:  # after this one's first page: the other goes, whole
            other.append(0)
            thread = threading.Thread(
                target=lambda: other.append(
                    follow_up.start_follow_up(
                        db, run_id, Selection(states=("sent",)), SystemClock().now(), SystemClock()
                    )
                )
            )
            thread.start()
            thread.join(60)
            assert len(other) == 2, "the other follow-up did not finish"
        return planned

    monkeypatch.setattr(follow_up, "plan_again", plan_while_another_follows_up)
    mine = follow_up.start_follow_up(
        db, run_id, Selection(states=("failed", "sent")), SystemClock().now(), SystemClock()
    )
    theirs = other[1]
    taken_by_them = {a for a, s in pending_or_codes(db, theirs).items() if s == "pending"}
    taken_by_me = {a for a, s in pending_or_codes(db, mine).items() if s == "pending"}
    assert taken_by_them == {f"p{i}@example.org" for i in range(2, 6)}
    assert taken_by_me == {"p0@example.org", "p1@example.org"}
    for address in taken_by_them:
        assert pending_or_codes(db, mine)[address] == ["in_another_run"]
    # Each recipient of the run is handed on to the follow-up that has its message.
    assert marks(db, run_id) == {
        **{f"p{i}@example.org": mine for i in range(2)},
        **{f"p{i}@example.org": theirs for i in range(2, 6)},
    }


def test_follow_ups_of_a_run_and_of_its_follow_up_made_at_once_send_each_message_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run A failed p0 and p1; its follow-up B failed them again. Following up A and B at
    the same moment, each would choose p0 and p1 (from different runs: no mark of one is
    the other's). The family is followed up one at a time: the second waits, then sees
    the first's run and excludes what it holds."""
    import threading

    a = sent_run(db, 3, 2)
    b = follow_up.start_follow_up(db, a, Selection(), SystemClock().now(), SystemClock())
    with db.connect() as connection:  # B was delivered and failed them again
        connection.execute(
            update(RECIPIENT)
            .where(RECIPIENT.c.run_id == b, RECIPIENT.c.state == "pending")
            .values(state="failed")
        )
        connection.execute(update(RUN).where(RUN.c.id == b).values(state="completed"))
    planning = follow_up.plan_again
    threads: list[threading.Thread] = []
    other: list[int] = []
    other_plans = threading.Event()

    def plan_while_another_starts(*args: Any, **kwargs: Any) -> Any:
        if threads and threading.current_thread() is threads[0]:
            other_plans.set()  # the other one got as far as planning
            return planning(*args, **kwargs)
        planned = planning(*args, **kwargs)
        if not threads:  # this one has planned its first page: the other starts now
            threads.append(
                threading.Thread(
                    target=lambda: other.append(
                        follow_up.start_follow_up(
                            db, b, Selection(), SystemClock().now(), SystemClock()
                        )
                    )
                )
            )
            threads[0].start()
            # Were nothing to hold it back, it would plan now, from what it reads before
            # this one has written: give it the time to (it must not get that far).
            assert not other_plans.wait(3)
        return planned

    monkeypatch.setattr(follow_up, "plan_again", plan_while_another_starts)
    mine = follow_up.start_follow_up(db, a, Selection(), SystemClock().now(), SystemClock())
    threads[0].join(60)
    assert other, "the other follow-up did not finish"
    theirs = other[0]
    assert theirs > mine  # it waited for this one
    assert pending_or_codes(db, mine) == {"p0@example.org": "pending", "p1@example.org": "pending"}
    assert pending_or_codes(db, theirs) == {
        "p0@example.org": ["in_another_run"],
        "p1@example.org": ["in_another_run"],
    }
    # B's recipients are handed on to the follow-up that has their messages: mine.
    assert marks(db, b) == {"p0@example.org": mine, "p1@example.org": mine}
