"""The data set generator: seeded, realistic, and accepted by the real import."""

from __future__ import annotations

import json
from pathlib import Path

from core.clock import parse_instant
from core.interchange import import_document
from core.planner.plan import make_plan
from core.storage import Database
from fixtures.generate import generate_document, load_database
from tests.conftest import STORY_AT


def test_a_target_number_of_candidates_is_met_exactly(sqlite_db: Database) -> None:
    load_database(sqlite_db, candidates=3000, seed=7)
    plan = make_plan(sqlite_db, "invoice-email", parse_instant(STORY_AT), environ={})
    assert plan.summary.candidates == 3000
    # A realistic mix: every decision, and the common reasons, appear.
    assert all(plan.summary.decisions[d] for d in ("included", "deferred", "excluded"))
    for code in (
        "invalid_address",
        "suppressed",
        "no_address_for_key",
        "billing_rule_not_due",
        "document_status_not_targeted",
        "service_status_not_allowed",
    ):
        assert plan.summary.by_reason[code], code


def test_the_same_seed_gives_the_same_data() -> None:
    assert generate_document(200, seed=3) == generate_document(200, seed=3)
    assert generate_document(200, seed=3) != generate_document(200, seed=4)


def test_a_generated_file_imports(sqlite_db: Database) -> None:
    document = generate_document(500, seed=2)
    outcome = import_document(sqlite_db, document)
    assert outcome.ok, outcome.problems[:3]
    assert outcome.counts["customers"] == 500


def test_a_file_written_a_batch_at_a_time_is_the_whole_document(tmp_path: Path) -> None:
    from fixtures.generate import iter_batches, write_document

    # More customers than a batch, so that the file is written in several.
    customers = 5000 + 30
    assert len(list(iter_batches(customers=customers, seed=4))) == 2
    out = tmp_path / "generated.json"
    write_document(customers, out, seed=4)
    assert out.read_text() == json.dumps(generate_document(customers, seed=4))
