"""msgrun import: strict checks, every problem with its path, all or nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from sqlalchemy import select

from core.interchange import import_text
from core.storage import Database
from core.storage.models import Address, Contact, Customer, History, Organisation, Service
from tests.conftest import BLUE_LAGOON, SUNNY_SIDE, load, load_ok, sample
from tests.db_snapshot import snapshot


def problems_of(db: Database, document: dict[str, Any] | str) -> list[str]:
    """Import a bad document; prove it wrote nothing; return its problems as text."""
    before = snapshot(db)
    outcome = load(db, document)
    assert not outcome.ok, "the import should have been refused"
    assert snapshot(db) == before, "a refused import must write nothing"
    return [str(problem) for problem in outcome.problems]


def test_the_samples_import(db: Database) -> None:
    outcome = load_ok(db, sample(BLUE_LAGOON))
    assert outcome.counts["customers"] == 18
    with db.session() as session:
        assert session.get(Organisation, 1).name == "Blue Lagoon Pools"  # type: ignore[union-attr]


def test_importing_the_same_file_twice_changes_nothing(db: Database) -> None:
    load_ok(db, sample(BLUE_LAGOON))
    first = snapshot(db)
    load_ok(db, sample(BLUE_LAGOON))
    assert snapshot(db) == first


def test_the_second_sample_imports_over_the_first_when_told_to(db: Database) -> None:
    load_ok(db, sample(BLUE_LAGOON))
    outcome = import_text(db, json.dumps(sample(SUNNY_SIDE)), replace_organisation=True)
    assert outcome.ok, outcome.problems
    with db.session() as session:
        assert session.get(Organisation, 1).name == "Sunny Side School Photos"  # type: ignore[union-attr]


def test_a_customer_is_stored_as_written(db: Database, minimal: dict[str, Any]) -> None:
    load_ok(db, minimal)
    changed = copy.deepcopy(minimal)
    customer = changed["customers"][0]
    customer["contacts"][0]["addresses"] = [
        {"address": "new@example.org", "key": "billing", "preferences": {"invoices": False}}
    ]
    customer["contacts"].append(
        {
            "id": "C1-2",
            "name": "Bo",
            "allow_email": False,
            "addresses": [{"address": "bo@example.org", "key": "primary"}],
        }
    )
    load_ok(db, changed)
    with db.session() as session:
        addresses = session.scalars(select(Address).order_by(Address.contact_id)).all()
        assert [(a.contact_id, a.address, a.pref_invoices) for a in addresses] == [
            ("C1-1", "new@example.org", False),
            ("C1-2", "bo@example.org", None),
        ]
    # Dropping the second contact removes it and its addresses.
    load_ok(db, minimal)
    with db.session() as session:
        assert [c.id for c in session.scalars(select(Contact))] == ["C1-1"]
        assert [a.address for a in session.scalars(select(Address))] == ["ana@example.org"]


def test_entities_not_in_the_file_are_kept(db: Database, minimal: dict[str, Any]) -> None:
    load_ok(db, minimal)
    other = copy.deepcopy(minimal)
    other["customers"][0]["id"] = "C2"
    other["customers"][0]["contacts"][0]["id"] = "C2-1"
    other["customers"][0]["services"][0]["id"] = "S2"
    other["documents"] = []
    load_ok(db, other)
    with db.session() as session:
        assert sorted(c.id for c in session.scalars(select(Customer))) == ["C1", "C2"]


def test_references_may_point_at_stored_records(db: Database, minimal: dict[str, Any]) -> None:
    load_ok(db, minimal)
    follow_up = {
        "format": "msgrun/1",
        "organisation": minimal["organisation"],
        "documents": [
            {
                "id": "D2",
                "kind": "invoice",
                "status": "approved",
                "customer": "C1",
                "service": "S1",
                "billing_method": "card",
            }
        ],
        "history": [
            {
                "definition": "inv",
                "customer": "C1",
                "document": "D2",
                "at": "2026-11-01T09:00:00+00:00",
            }
        ],
    }
    load_ok(db, follow_up)
    with db.session() as session:
        assert session.scalar(select(History.document_id)) == "D2"


def test_history_is_stored_once(db: Database, minimal: dict[str, Any]) -> None:
    entry = {
        "definition": "inv",
        "customer": "C1",
        "address": "Ana@Example.org",
        "at": "2026-11-01T10:00:00+01:00",
    }
    minimal["history"] = [
        entry,
        {**entry, "address": "ana@example.org", "at": "2026-11-01T09:00:00+00:00"},
    ]
    load_ok(db, minimal)
    load_ok(db, minimal)
    with db.session() as session:
        assert len(session.scalars(select(History)).all()) == 1


def test_not_json(db: Database) -> None:
    assert problems_of(db, '{"format": "msgrun/1",\n "organisation": }') == [
        "not JSON: Expecting value at line 2, column 18"
    ]


def test_not_an_object(db: Database) -> None:
    assert problems_of(db, "[1, 2]") == ["expected an object, got a list"]


def test_wrong_format(db: Database, minimal: dict[str, Any]) -> None:
    minimal["format"] = "msgrun/2"
    assert problems_of(db, minimal) == [
        "format: 'msgrun/2' is not a format msgrun reads; expected 'msgrun/1'"
    ]


def test_missing_format_and_organisation(db: Database) -> None:
    assert problems_of(db, {"customers": []}) == ["format: required", "organisation: required"]


def test_unknown_keys_at_every_depth(db: Database, minimal: dict[str, Any]) -> None:
    minimal["extra"] = 1
    minimal["organisation"]["outbound"] = {"auto_send_invoice": False}
    minimal["customers"][0]["contacts"][0]["addresses"][0]["preferences"] = {"invoice": True}
    minimal["definitions"][0]["trigger"]["cron"] = "0 9 * * *"
    assert problems_of(db, minimal) == [
        "organisation.outbound.auto_send_invoice: unknown key",
        "customers[0].contacts[0].addresses[0].preferences.invoice: unknown key",
        "definitions[0].trigger.cron: unknown key",
        "extra: unknown key",
    ]


def test_a_key_given_twice(db: Database) -> None:
    text = (
        '{"format": "msgrun/1", "format": "msgrun/1", "organisation": '
        '{"name": "X", "timezone": "UTC", "sender_verified": true}}'
    )
    assert problems_of(db, text) == ["format: given more than once"]


def test_missing_required_fields(db: Database, minimal: dict[str, Any]) -> None:
    del minimal["customers"][0]["contacts"][0]["addresses"][0]["key"]
    del minimal["documents"][0]["status"]
    minimal["smtp_profiles"][0]["host"] = None
    assert problems_of(db, minimal) == [
        "smtp_profiles[0].host: required",
        "customers[0].contacts[0].addresses[0].key: required",
        "documents[0].status: required",
    ]


def test_wrong_types(db: Database, minimal: dict[str, Any]) -> None:
    minimal["organisation"]["sender_verified"] = "yes"
    minimal["smtp_profiles"][0]["port"] = "587"
    minimal["smtp_profiles"][0]["max_connections"] = True
    minimal["customers"][0]["contacts"] = {"id": "x"}
    minimal["billing_methods"][0]["send_rules"][0]["offset_days"] = 1.5
    assert problems_of(db, minimal) == [
        "organisation.sender_verified: expected true or false, got a string",
        "smtp_profiles[0].port: expected a whole number, got a string",
        "smtp_profiles[0].max_connections: expected a whole number, got a boolean",
        "billing_methods[0].send_rules[0].offset_days: expected a whole number, got a number",
        "customers[0].contacts: expected a list, got an object",
    ]


def test_values_outside_their_enum(db: Database, minimal: dict[str, Any]) -> None:
    minimal["smtp_profiles"][0]["security"] = "ssl"
    minimal["documents"][0]["status"] = "draft"
    minimal["definitions"][0]["kind"] = "newsletter"
    minimal["definitions"][0]["document_statuses"] = ["approved", "due"]
    assert problems_of(db, minimal) == [
        "smtp_profiles[0].security: 'ssl' is not one of: none, starttls, tls",
        "documents[0].status: 'draft' is not one of: concept, approved, sent, paid, overdue, void",
        "definitions[0].kind: 'newsletter' is not one of: invoice, invoice_reminder, job_sheet, "
        "payment_receipt, confirmation, status_update, service_reminder, broadcast",
        "definitions[0].document_statuses[1]: 'due' is not one of: concept, approved, sent, "
        "paid, overdue, void",
    ]


def test_bad_dates_timestamps_timezones_times_and_cron(
    db: Database, minimal: dict[str, Any]
) -> None:
    minimal["organisation"]["timezone"] = "Mars/Olympus_Mons"
    minimal["documents"][0]["due_date"] = "2026-02-30"
    minimal["suppressions"] = [
        {"address": "x@example.org", "reason": "manual", "since": "01/09/2026"}
    ]
    minimal["history"] = [
        {"definition": "inv", "customer": "C1", "at": "2026-11-01T09:00:00"},
        {"definition": "inv", "customer": "C1", "at": "yesterday"},
    ]
    definition = minimal["definitions"][0]
    definition["quiet_hours"] = {"start": "21:00", "end": "9am"}
    definition["trigger"] = {"type": "routine", "cron": "every day at 9"}
    assert problems_of(db, minimal) == [
        "organisation.timezone: 'Mars/Olympus_Mons' is not an IANA timezone "
        "(e.g. Europe/Amsterdam)",
        "documents[0].due_date: '2026-02-30' is not a date (YYYY-MM-DD)",
        "suppressions[0].since: '01/09/2026' is not a date (YYYY-MM-DD)",
        "definitions[0].trigger.cron: 'every day at 9' is not a cron expression (five fields: "
        "minute hour day-of-month month day-of-week)",
        "definitions[0].quiet_hours.end: '9am' is not a time of day (HH:MM, 00:00 to 23:59)",
        "history[0].at: '2026-11-01T09:00:00' has no UTC offset (add +00:00, or the local offset)",
        "history[1].at: 'yesterday' is not an ISO 8601 timestamp (2026-11-23T09:00:00+00:00)",
    ]


def test_duplicate_ids(db: Database, minimal: dict[str, Any]) -> None:
    minimal["customers"].append(copy.deepcopy(minimal["customers"][0]))
    minimal["documents"].append(copy.deepcopy(minimal["documents"][0]))
    assert problems_of(db, minimal) == [
        "customers[1]: duplicate customer id 'C1' (also at customers[0])",
        "customers[1].contacts[0]: duplicate contact id 'C1-1' (also at customers[0].contacts[0])",
        "customers[1].services[0]: duplicate service id 'S1' (also at customers[0].services[0])",
        "documents[1]: duplicate document id 'D1' (also at documents[0])",
    ]


def test_dangling_references(db: Database, minimal: dict[str, Any]) -> None:
    minimal["documents"][0]["customer"] = "C9"
    minimal["documents"][0]["billing_method"] = "cash"
    minimal["definitions"][0]["smtp_profile"] = "backup"
    minimal["history"] = [
        {
            "definition": "nope",
            "customer": "C1",
            "document": "D7",
            "at": "2026-11-01T09:00:00+00:00",
        }
    ]
    assert problems_of(db, minimal) == [
        "documents[0].customer: refers to customer 'C9', which is neither in the file nor stored",
        "documents[0].billing_method: refers to billing method 'cash', which is neither in the "
        "file nor stored",
        "definitions[0].smtp_profile: refers to SMTP profile 'backup', which is neither in the "
        "file nor stored",
        "history[0].definition: refers to definition 'nope', which is neither in the file nor "
        "stored",
        "history[0].document: refers to document 'D7', which is neither in the file nor stored",
        "documents[0].service: service 'S1' belongs to customer 'C1', not to 'C9'",
    ]


def test_a_service_still_used_cannot_be_dropped(db: Database, minimal: dict[str, Any]) -> None:
    load_ok(db, minimal)
    without = {
        "format": "msgrun/1",
        "organisation": minimal["organisation"],
        "customers": [{**minimal["customers"][0], "services": []}],
    }
    assert problems_of(db, without) == [
        "customers[0].services: no longer lists service 'S1', which stored document 'D1' still uses"
    ]
    # Re-pointing the document in the same file makes it fine.
    without["documents"] = [{**minimal["documents"][0], "service": None}]
    load_ok(db, without)
    with db.session() as session:
        assert session.scalars(select(Service)).all() == []


def test_username_and_password_env_go_together(db: Database, minimal: dict[str, Any]) -> None:
    minimal["smtp_profiles"][0]["username"] = "billing"
    assert problems_of(db, minimal) == [
        "smtp_profiles[0].password_env: required when username is given (they go together)"
    ]


def test_template_syntax_is_checked(db: Database, minimal: dict[str, Any]) -> None:
    minimal["definitions"][0]["template"]["subject"] = "Invoice {{ document.label "
    (problem,) = problems_of(db, minimal)
    assert problem.startswith("definitions[0].template.subject: template error at line 1")


@pytest.mark.parametrize("kind", ["broadcast", "status_update", "service_reminder"])
def test_a_template_that_uses_document_on_a_kind_without_documents_is_refused(
    db: Database, minimal: dict[str, Any], kind: str
) -> None:
    minimal["definitions"][0]["kind"] = kind
    minimal["definitions"][0]["template"] = {
        "subject": "News",
        "text": "Dear {{ customer.name }}, you owe {{ document.amount }}",
        "html": "{% if document %}<p>{{ document.label }}</p>{% endif %}",
    }
    because = f"uses `document`, but a {kind} definition has none: it plans over addresses alone"
    assert problems_of(db, minimal) == [
        f"definitions[0].template.text: {because}",
        f"definitions[0].template.html: {because}",
    ]


def test_a_template_that_uses_document_on_a_kind_with_documents_imports(
    db: Database, minimal: dict[str, Any]
) -> None:
    minimal["definitions"][0]["template"]["text"] = "{{ document.amount }}"
    load_ok(db, minimal)
    broadcast = copy.deepcopy(minimal["definitions"][0])
    broadcast.update(id="news", kind="broadcast")
    broadcast["template"] = {"subject": "News", "text": "{% set document = 1 %}{{ document }}"}
    minimal["definitions"].append(broadcast)
    load_ok(db, minimal)


@pytest.mark.parametrize("number", [42, 4.2, True])
def test_a_customer_id_that_is_not_text_is_said_once_and_no_service_belongs_to_none(
    db: Database, minimal: dict[str, Any], number: Any
) -> None:
    minimal["customers"][0]["id"] = number
    problems = problems_of(db, minimal)
    assert problems[0].startswith("customers[0].id: expected a string")
    assert not [p for p in problems if "None" in p], problems


def test_audience_clauses_need_one_test(db: Database, minimal: dict[str, Any]) -> None:
    minimal["definitions"][0]["audience"] = [
        {"attribute": "a"},
        {"attribute": "b", "equals": 1, "in": [1]},
        {"attribute": "c", "in": "x"},
    ]
    assert problems_of(db, minimal) == [
        'definitions[0].audience[0]: needs exactly one of "equals" or "in"',
        'definitions[0].audience[1]: needs exactly one of "equals" or "in"',
        "definitions[0].audience[2].in: expected a list of strings, numbers or booleans",
    ]


def test_every_problem_is_listed_not_only_the_first(db: Database) -> None:
    data = sample(BLUE_LAGOON)
    for customer in data["customers"]:
        customer["contacts"][0]["allow_email"] = "sometimes"
    problems = problems_of(db, data)
    assert len(problems) == len(data["customers"])


def test_an_invalid_address_is_data_not_an_import_error(
    db: Database, minimal: dict[str, Any]
) -> None:
    minimal["customers"][0]["contacts"][0]["addresses"][0]["address"] = "ana@@example"
    load_ok(db, minimal)
    with db.session() as session:
        stored = session.scalars(select(Address)).one()
    assert stored.address == "ana@@example"
    assert stored.problem is not None


def test_addresses_are_kept_as_written(db: Database, minimal: dict[str, Any]) -> None:
    minimal["customers"][0]["contacts"][0]["addresses"][0]["address"] = "Ana.Souza@Example.ORG"
    load_ok(db, minimal)
    with db.session() as session:
        stored = session.scalars(select(Address)).one()
    assert (stored.address, stored.address_lower) == (
        "Ana.Souza@Example.ORG",
        "ana.souza@example.org",
    )


@pytest.mark.parametrize("value", [None, {}])
def test_null_means_absent(db: Database, minimal: dict[str, Any], value: Any) -> None:
    minimal["customers"][0]["cluster"] = None
    minimal["customers"][0]["attributes"] = value
    minimal["documents"][0]["number"] = None
    load_ok(db, minimal)
    with db.session() as session:
        customer = session.get(Customer, "C1")
        assert customer is not None and customer.cluster is None and customer.attributes == {}


def test_progress_is_reported_while_checking_and_writing(db: Database) -> None:
    from core.interchange import import_document
    from fixtures.generate import generate_document

    seen: dict[str, tuple[int, int]] = {}
    outcome = import_document(
        db,
        generate_document(2500, seed=5),
        lambda phase, done, total: seen.update({phase: (done, total)}),
    )
    assert outcome.ok
    assert seen["checking customers"] == (2500, 2500)
    assert seen["writing customers"] == (2500, 2500)
    assert seen["writing documents"][0] == seen["writing documents"][1] > 0
