"""Rule 16 deduplicates the document: a page reads the ledger entries sent for its own
customers, and also those sent for another customer whose document is now one of its
customers' (a document imported again under another customer), found once a plan."""

from __future__ import annotations

from typing import Any

import pytest

from core.clock import parse_instant
from core.planner import load
from core.planner.plan import make_plan
from core.storage import Database
from core.storage.ledger import history_row, write_history
from tests.conftest import load_ok
from tests.delivery_support import document

AT = parse_instant("2026-11-23T10:00:00+11:00")


def sent_then_moved(db: Database) -> None:
    """D00000 was sent for C00000 to p0@example.org; it now belongs to C00002, who has
    that address too."""
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
    moved: dict[str, Any] = doc["documents"][0]
    moved["customer"] = "C00002"
    doc["customers"][2]["contacts"][0]["addresses"][0]["address"] = "p0@example.org"
    load_ok(db, doc)


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
