"""Rule 16 deduplicates the document: a page reads the ledger entries of its customers'
documents, whichever customer an entry was sent for (a document imported again under
another customer), in the same statement that finds the documents, so that a document
moved while a plan is being made is still found sent."""

from __future__ import annotations

from typing import Any

import pytest

from core.clock import parse_instant
from core.planner import load
from core.planner.load import load_definition, load_organisation
from core.planner.plan import Summary, iter_plan, make_plan
from core.storage import Database
from core.storage.ledger import history_row, write_history
from tests.conftest import load_ok
from tests.delivery_support import document

AT = parse_instant("2026-11-23T10:00:00+11:00")


def sent(db: Database) -> dict[str, Any]:
    """Three customers, each with an invoice; D00000 was sent for C00000 to p0@example.org.
    The document imported, to import again changed."""
    doc = document(3, 2525)
    doc["definitions"][0]["dedup"] = "per_document"
    load_ok(db, doc)
    with db.connect() as connection:
        write_history(
            connection,
            [
                history_row(
                    definition_id="inv",
                    customer_id="C00000",
                    address="p0@example.org",
                    document_id="D00000",
                    offset_days=None,
                    at=parse_instant("2026-11-01T10:00:00Z"),
                    run_id=None,
                )
            ],
        )
    return doc


def moved(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with D00000 now C00002's, who has p0@example.org too."""
    doc["documents"][0]["customer"] = "C00002"
    doc["customers"][2]["contacts"][0]["addresses"][0]["address"] = "p0@example.org"
    return doc


def sent_then_moved(db: Database) -> None:
    load_ok(db, moved(sent(db)))


@pytest.mark.parametrize("page", [1, 2, load.PAGE])
def test_an_entry_sent_for_another_customer_still_deduplicates_its_document(
    db: Database, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    sent_then_moved(db)
    monkeypatch.setattr(load, "PAGE", page)
    plan = make_plan(db, "inv", AT, environ={})
    decided = {(c.customer, c.document): c.codes() for c in plan.candidates}
    assert decided == {
        ("C00001", "D00001"): [],
        ("C00002", "D00002"): [],
        ("C00002", "D00000"): ["already_sent"],
    }


def test_planning_its_new_customer_alone_finds_the_entry_too(db: Database) -> None:
    sent_then_moved(db)
    plan = make_plan(db, "inv", AT, customers=["C00002"], environ={})
    decided = {c.document: c.codes() for c in plan.candidates}
    assert decided == {"D00000": ["already_sent"], "D00002": []}
    assert "C00000" not in {c.customer for c in plan.candidates}


def test_a_document_moved_while_it_is_planned_is_still_found_sent(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan is read a page at a time; an import that moves a sent document to a customer
    of a later page meanwhile (PostgreSQL's later pages see it) must not make it sendable."""
    doc = sent(db)
    monkeypatch.setattr(load, "PAGE", 1)
    with db.connect() as connection:
        definition = load_definition(connection, "inv")
        candidates = iter_plan(connection, load_organisation(connection), definition, AT, Summary())
        first = next(candidates)  # the first page is read
        load_ok(db, moved(doc))
        planned = [first, *candidates]
    decided = [c.codes() for c in planned if c.document == "D00000"]
    assert decided and all(codes == ["already_sent"] for codes in decided), decided


def test_a_plan_is_one_snapshot_however_long_it_takes(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read a page at a time, a plan still sees the data as it was when it began: a
    document an import moves to a customer of a later page meanwhile is planned once,
    under the customer it had (not twice, nor, moved the other way, not at all)."""
    doc = document(3, 2525)
    load_ok(db, doc)
    monkeypatch.setattr(load, "PAGE", 1)
    with db.snapshot() as connection:
        definition = load_definition(connection, "inv")
        candidates = iter_plan(connection, load_organisation(connection), definition, AT, Summary())
        first = next(candidates)  # the first page is read
        doc["documents"][0]["customer"] = "C00002"  # D00000, C00000's, moves to page 3
        doc["documents"][2]["customer"] = "C00000"  # D00002, C00002's, moves to page 1
        load_ok(db, doc)
        planned = [(c.customer, c.document) for c in [first, *candidates]]
    assert planned == [("C00000", "D00000"), ("C00001", "D00001"), ("C00002", "D00002")]
    assert make_plan(db, "inv", AT, environ={}).candidates[0].document == "D00002"  # moved


def test_a_run_created_on_postgresql_is_one_snapshot_too(
    postgresql_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run start`` on PostgreSQL plans in one snapshot: an import that moves documents
    between customers of different pages while the run is created changes nothing of it.
    (On SQLite the run's first row takes the writers' lock: an import waits for it.)"""
    from core.clock import SystemClock
    from core.delivery.starting import create_run
    from core.planner import plan
    from core.views.run_json import recipient_rows

    db = postgresql_db
    doc = document(3, 2525)
    load_ok(db, doc)
    monkeypatch.setattr(load, "PAGE", 1)
    pages: list[object] = []
    read_ledger = plan.read_ledger

    def then_move(*args: Any) -> None:
        pages.append(args)
        if len(pages) == 2:  # the first page planned: an import moves two documents
            doc["documents"][0]["customer"] = "C00002"
            doc["documents"][2]["customer"] = "C00000"
            load_ok(db, doc)
        read_ledger(*args)

    monkeypatch.setattr(plan, "read_ledger", then_move)
    run_id = create_run(db, "inv", AT, SystemClock())
    rows = recipient_rows(db, run_id)
    assert len(pages) == 3
    assert [(r["customer"], r["document"]) for r in rows] == [
        ("C00000", "D00000"),
        ("C00001", "D00001"),
        ("C00002", "D00002"),
    ]
