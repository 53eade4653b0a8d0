"""Properties of every plan, over randomly generated organisations (hypothesis)."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.clock import format_instant, parse_instant
from core.planner import load
from core.planner.explain import explain_customer
from core.planner.plan import Plan, make_plan
from core.planner.reasons import CODES, ORDER
from core.planner.report import (
    candidate_json,
    dumps,
    iter_plan_json,
    plan_json,
    stream_plan_json,
)
from core.storage import Database
from core.vocabulary import DEFINITION_KINDS, DOCUMENT_KIND_OF
from tests.conftest import empty_all_tables, load_ok
from tui.plan_text import plan_text, stream_plan_text

ZONES = ["UTC", "Australia/Sydney", "Europe/London", "America/Sao_Paulo"]
ADDRESS_POOL = [
    "ana@example.org",
    "ANA@example.org",
    "bo@example.org",
    "bad@@example",
    "cy@example.net",
]
KEYS = ["billing", "primary"]
STATUSES = ["concept", "approved", "sent", "paid", "overdue", "void"]
SERVICE_STATUSES = ["active", "suspended", "inactive", "cancelled"]

maybe_bool = st.one_of(st.none(), st.booleans())

# A documents folder for every generated organisation: two files present, one small
# and one over the 12,000-byte limit a profile may have; "gone.pdf" is never there.
FOLDER = Path(tempfile.mkdtemp(prefix="msgrun-plan-files-"))
atexit.register(shutil.rmtree, FOLDER, True)
(FOLDER / "small.pdf").write_bytes(b"%PDF-1.4 small")
(FOLDER / "big.pdf").write_bytes(b"%PDF-1.4 " + b"x" * 4000)
FILE_PATHS = ["small.pdf", "big.pdf", "gone.pdf"]
file_lists = st.lists(st.sampled_from(FILE_PATHS), max_size=2, unique=True)


def optional_flags(names: list[str]) -> st.SearchStrategy[dict[str, bool]]:
    return st.dictionaries(st.sampled_from(names), st.booleans(), max_size=len(names))


@st.composite
def organisations(draw: st.DrawFn) -> dict[str, Any]:
    customers = []
    documents = []
    n_customers = draw(st.integers(1, 5))
    for i in range(n_customers):
        cid = f"C{i}"
        contacts = []
        for j in range(draw(st.integers(0, 2))):
            addresses = [
                {
                    "address": draw(st.sampled_from(ADDRESS_POOL)),
                    "key": draw(st.sampled_from(KEYS)),
                    "preferences": draw(
                        optional_flags(
                            ["invoices", "payment_receipts", "confirmations", "status_updates"]
                        )
                    ),
                }
                for _ in range(draw(st.integers(0, 3)))
            ]
            contacts.append(
                {
                    "id": f"{cid}-{j}",
                    "name": f"Contact {j}",
                    "allow_email": draw(st.booleans()),
                    "preferences": draw(
                        optional_flags(
                            [
                                "send_invoice_reminders",
                                "send_service_reminders",
                                "email_confirmations_all_jobs",
                                "exclude_from_broadcasts",
                            ]
                        )
                    ),
                    "addresses": addresses,
                }
            )
        services = [
            {
                "id": f"S{i}-{k}",
                "status": draw(st.sampled_from(SERVICE_STATUSES)),
                "allow_billing_email": draw(st.booleans()),
            }
            for k in range(draw(st.integers(0, 2)))
        ]
        customers.append(
            {
                "id": cid,
                "name": f"Customer {i}",
                "cluster": draw(st.sampled_from(["a", "b", None])),
                "timezone": draw(st.sampled_from([None, *ZONES])),
                "attributes": draw(
                    st.dictionaries(
                        st.sampled_from(["vip", "n"]),
                        st.one_of(st.booleans(), st.integers(0, 2)),
                        max_size=2,
                    )
                ),
                "contacts": contacts,
                "services": services,
            }
        )
        for d in range(draw(st.integers(0, 3))):
            documents.append(
                {
                    "id": f"D{i}-{d}",
                    "kind": draw(st.sampled_from(["invoice", "job_sheet", "confirmation"])),
                    "number": draw(st.sampled_from([None, f"N-{i}{d}"])),
                    "status": draw(st.sampled_from(STATUSES)),
                    "customer": cid,
                    "service": draw(st.sampled_from([None, *[s["id"] for s in services]])),
                    "billing_method": draw(st.sampled_from([None, "m0", "m1"])),
                    "due_date": draw(
                        st.sampled_from([None, "2026-11-20", "2026-11-23", "2026-11-26"])
                    ),
                    "files": [{"path": path} for path in draw(file_lists)] or None,
                }
            )
    kind = draw(st.sampled_from(DEFINITION_KINDS))
    trigger = draw(
        st.sampled_from(
            [
                {"type": "manual"},
                {"type": "routine", "cron": "0 9 * * *"},
                {"type": "event", "event": "e"},
            ]
        )
    )
    definition = {
        "id": "def",
        "name": "Definition",
        "kind": kind,
        "address_key": draw(st.sampled_from(KEYS)),
        "smtp_profile": "main",
        "trigger": trigger,
        "dedup": draw(st.sampled_from(["none", "per_document", "per_trigger"])),
        "use_billing_rules": draw(st.booleans()),
        "clusters": draw(st.sampled_from([None, ["a"], ["a", "b"], []])),
        "document_statuses": draw(st.sampled_from([None, ["approved", "overdue"], ["concept"]])),
        "audience": draw(
            st.sampled_from(
                [None, [{"attribute": "vip", "equals": True}], [{"attribute": "n", "in": [1, 2]}]]
            )
        ),
        "quiet_hours": draw(
            st.sampled_from(
                [None, {"start": "21:00", "end": "09:00"}, {"start": "08:00", "end": "08:00"}]
            )
        ),
        "template": {
            "subject": "s",
            "text": "t",
            "attachments": {"files": draw(file_lists)},
        },
    }
    history = [
        {
            "definition": "def",
            "customer": f"C{draw(st.integers(0, n_customers - 1))}",
            "address": draw(st.sampled_from([None, *ADDRESS_POOL])),
            "document": draw(st.sampled_from([None, *[d["id"] for d in documents]])),
            "offset_days": draw(st.sampled_from([None, -3, 0, 3])),
            "at": "2026-11-01T09:00:00+00:00",
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    return {
        "format": "msgrun/1",
        "organisation": {
            "name": "Org",
            "timezone": draw(st.sampled_from(ZONES)),
            "sender_verified": draw(st.booleans()),
            "outbound": draw(
                optional_flags(
                    ["auto_send_invoices", "auto_send_payment_receipts", "auto_send_confirmations"]
                )
            ),
            "default_address_preferences": draw(optional_flags(["invoices", "status_updates"])),
            "default_contact_preferences": draw(
                optional_flags(["send_invoice_reminders", "exclude_from_broadcasts"])
            ),
            "documents_folder": str(FOLDER),
        },
        "smtp_profiles": [
            {
                "id": "main",
                "host": "localhost",
                "port": 25,
                "security": "none",
                "from_address": "from@example.org",
                "max_message_bytes": draw(st.sampled_from([None, 12000])),
            }
        ],
        "billing_methods": [
            {"id": "m0", "name": "No rules"},
            {
                "id": "m1",
                "name": "Rules",
                "send_rules": [{"offset_days": 0}, {"offset_days": 3}],
                "service_statuses_for_sending": draw(st.sampled_from([None, ["active"]])),
            },
        ],
        "customers": customers,
        "documents": documents,
        "suppressions": draw(
            st.lists(
                st.sampled_from(["ana@example.org", "BO@example.org"]),
                unique_by=str.lower,
                max_size=2,
            ).map(
                lambda xs: [{"address": a, "reason": "manual", "since": "2026-01-01"} for a in xs]
            )
        ),
        "definitions": [definition],
        "history": history,
    }


ats = st.sampled_from(
    [
        "2026-11-23T10:00:00+00:00",
        "2026-11-22T22:30:00+00:00",
        "2026-03-29T01:30:00+00:00",
    ]
)


def check_plan(plan: Plan, document: dict[str, Any]) -> None:
    order = [(c.customer, c.address or "", c.document or "") for c in plan.candidates]
    assert order == sorted(order), "candidates are ordered by customer, address, document"
    for c in plan.candidates:
        codes = [r.code for r in c.reasons]
        assert set(codes) <= set(CODES)
        assert [ORDER[code] for code in codes] == sorted(ORDER[code] for code in set(codes)), (
            "reasons come once each, in table order"
        )
        if c.decision == "included":
            assert not c.reasons and c.send_after is None
        elif c.decision == "deferred":
            assert not c.reasons and c.send_after is not None and c.send_after > plan.at
        else:
            assert c.decision == "excluded" and c.reasons and c.send_after is None
        assert ("no_address_for_key" in codes) == (c.address is None)
        if c.address is None:
            assert c.contact is None
            assert not set(codes) & {
                "invalid_address",
                "suppressed",
                "contact_email_not_allowed",
                "address_preference_off",
                "contact_preference_off",
            }
        has_documents = DOCUMENT_KIND_OF[plan.definition.kind] is not None
        assert (c.document is not None) == has_documents
        # Rules 19 and 20 follow the files the message attaches, as they are.
        attached = list(plan.definition.attachment_files)
        if c.document is not None and plan.definition.attach_document_files:
            own = next(d for d in document["documents"] if d["id"] == c.document)
            attached += [f["path"] for f in own.get("files") or ()]
        paths = {spec if isinstance(spec, str) else spec.path for spec in attached}
        assert ("document_file_missing" in codes) == ("gone.pdf" in paths)
        limited = document["smtp_profiles"][0]["max_message_bytes"] is not None
        assert ("message_too_large" in codes) == (limited and "big.pdf" in paths)
    summary = plan.summary.as_json()
    assert summary["candidates"] == len(plan.candidates)
    assert summary["included"] + summary["deferred"] + summary["excluded"] == len(plan.candidates)
    # Case variants of one customer's addresses count once.
    seen = set()
    for c in plan.candidates:
        key = (c.customer, (c.address or "").lower(), c.document)
        assert key not in seen
        seen.add(key)


def run_property(db: Database, document: dict[str, Any], at: str) -> None:
    empty_all_tables(db)
    load_ok(db, document)
    instant = parse_instant(at)
    plan = make_plan(db, "def", instant, environ={})
    check_plan(plan, document)
    # Deterministic: the same data and `at` give byte-identical JSON.
    assert dumps(plan_json(make_plan(db, "def", instant, environ={}))) == dumps(plan_json(plan))
    assert plan_json(plan)["at"] == format_instant(instant)
    # The streamed JSON of `msgrun plan --json` is those same bytes.
    assert "".join(iter_plan_json(plan)) == dumps(plan_json(plan))
    # And so is the plan streamed without being held (each candidate written as decided).
    assert "".join(stream_plan_json(db, "def", instant, environ={})) == dumps(plan_json(plan))
    # `msgrun plan`'s text, streamed the same way, is the text of the whole plan.
    assert "".join(stream_plan_text(db, "def", instant, {})) == plan_text(plan)
    # Read a page of one or two customers at a time (their history with them), or for
    # some customers only, the plan is the same.
    with patch.object(load, "PAGE", 2):
        assert dumps(plan_json(make_plan(db, "def", instant, environ={}))) == dumps(plan_json(plan))
        some = [c["id"] for c in document["customers"][::2]]
        part = make_plan(db, "def", instant, customers=some, environ={})
        assert [candidate_json(c) for c in part.candidates] == [
            candidate_json(c) for c in plan.candidates if c.customer in some
        ]
    # The drill-down agrees with the plan, customer by customer.
    for customer in document["customers"]:
        report = explain_customer(db, customer["id"], instant, definition_id="def", environ={})
        (only,) = report.plans
        mine = [candidate_json(c) for c in plan.candidates if c.customer == customer["id"]]
        assert [candidate_json(c) for c in only.candidates] == mine


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(document=organisations(), at=ats)
def test_plan_properties_on_sqlite(sqlite_db: Database, document: dict[str, Any], at: str) -> None:
    run_property(sqlite_db, document, at)


@pytest.mark.postgresql
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=organisations(), at=ats)
def test_plan_properties_on_postgresql(
    postgresql_db: Database, document: dict[str, Any], at: str
) -> None:
    run_property(postgresql_db, document, at)


def test_json_is_stable_text(sqlite_db: Database) -> None:
    """A plan's JSON has the keys and forms of interchange.md."""
    from tests.conftest import MINIMAL

    load_ok(sqlite_db, json.loads(json.dumps(MINIMAL)))
    out = json.loads(
        dumps(
            plan_json(
                make_plan(sqlite_db, "inv", parse_instant("2026-11-23T10:00:00Z"), environ={})
            )
        )
    )
    assert list(out) == ["definition", "at", "summary", "candidates", "warnings"]
    assert list(out["summary"]) == ["candidates", "included", "deferred", "excluded", "by_reason"]
    assert list(out["candidates"][0]) == [
        "customer",
        "contact",
        "address",
        "document",
        "label",
        "decision",
        "reasons",
        "send_after",
    ]
    assert out["at"] == "2026-11-23T10:00:00+00:00"
