"""Reasons whose sentences are written when first read (``Reason.later``) say what the
rules wrote at once, and a summary counted a page at a time is the one counted a
candidate at a time."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from core.clock import parse_instant
from core.planner.load import load_definitions
from core.planner.plan import Summary, make_plan
from core.planner.reasons import Reason
from core.storage import Database
from tests.conftest import BLUE_LAGOON, SUNNY_SIDE, empty_all_tables, load_ok, sample

# Every reason of the samples' plans at two instants, as the planner wrote them when it
# wrote every sentence at once (before Reason.later); the samples' folder as SAMPLES.
RECORDED = Path(__file__).with_name("planner_sample_reasons.json")
INSTANTS = ("2026-11-23T10:00:00+11:00", "2026-12-01T22:30:00+00:00")


def test_a_later_reason_writes_its_template_with_its_values_when_read() -> None:
    reason = Reason.later(
        "billing_rule_not_due",
        "document {} is due {}; sent by {!r}",
        ("D1", date(2026, 11, 20), "x"),
    )
    eager = Reason("billing_rule_not_due", "document D1 is due 2026-11-20; sent by 'x'")
    assert reason.detail == eager.detail
    assert reason.detail is reason.detail  # written once
    assert reason == eager and hash(reason) == hash(eager)
    assert reason.as_json() == {"code": "billing_rule_not_due", "detail": eager.detail}
    assert Reason.later("already_sent", "{}", ("x",), run=7) != Reason("already_sent", "x")
    assert repr(reason) == repr(eager)


@pytest.mark.parametrize("path", [BLUE_LAGOON, SUNNY_SIDE], ids=["blue-lagoon", "sunny-side"])
def test_the_samples_reasons_are_the_sentences_written_at_once(db: Database, path: Path) -> None:
    recorded = json.loads(RECORDED.read_text())
    empty_all_tables(db)
    load_ok(db, sample(path))
    with db.connect() as connection:
        definitions = [d.id for d in load_definitions(connection)]
    compared = 0
    for at in INSTANTS:
        for definition in definitions:
            plan = make_plan(db, definition, parse_instant(at), environ={})
            planned = [
                [
                    c.customer,
                    c.address,
                    c.document,
                    c.decision,
                    [[r.code, r.detail.replace(str(path.parent), "SAMPLES")] for r in c.reasons],
                ]
                for c in plan.candidates
            ]
            assert planned == recorded[f"{path.stem} {definition} {at}"], (definition, at)
            counted = Summary()
            for candidate in plan.candidates:
                counted.add(candidate)
            assert counted == plan.summary, (definition, at)
            compared += len(planned)
    assert compared > 0
