"""msgrun import reads a file a record at a time and writes a batch at a time, in one
transaction: still all or nothing, with every problem at its path, and references
to records further on in the file still resolve."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from core.interchange import import_stream, import_text, load
from core.storage import Database
from core.storage.models import Customer, Definition, Document, History
from fixtures.generate import generate_document
from tests.conftest import load_ok
from tests.db_snapshot import snapshot


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of two records, so that a small file is checked and written in many."""
    monkeypatch.setattr(load, "BATCH", 2)


def customers_file(count: int, seed: int = 3) -> dict[str, Any]:
    return generate_document(count, seed)


@pytest.mark.usefixtures("small_batches")
def test_a_file_whose_last_customer_is_invalid_is_refused_whole_after_earlier_batches_were_written(
    db: Database,
) -> None:
    document = customers_file(9)
    del document["customers"][-1]["name"]
    before = snapshot(db)
    outcome = import_text(db, json.dumps(document))
    assert [str(p) for p in outcome.problems] == ["customers[8].name: required"]
    assert snapshot(db) == before


@pytest.mark.usefixtures("small_batches")
def test_references_to_records_further_on_in_the_file_resolve(db: Database) -> None:
    document = customers_file(7)
    # Documents and history before the customers they name, definitions before
    # their SMTP profile: the keys in the reverse of the usual order.
    reordered = {key: document[key] for key in reversed(list(document))}
    assert list(reordered)[:2] == ["history", "suppressions"]
    outcome = load_ok(db, reordered)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == len(
            document["documents"]
        )
        assert session.scalar(select(func.count()).select_from(History)) == len(document["history"])
        assert session.scalar(select(func.count()).select_from(Definition)) == len(
            document["definitions"]
        )
    assert outcome.counts["customers"] == 7


@pytest.mark.usefixtures("small_batches")
def test_a_reference_found_nowhere_is_named_even_when_it_comes_before_the_customers(
    db: Database,
) -> None:
    document = customers_file(5)
    document["documents"][3]["customer"] = "C-nobody"
    reordered = {"documents": document.pop("documents"), **document}
    problems = [str(p) for p in import_text(db, json.dumps(reordered)).problems]
    assert problems == [
        "documents[3].customer: refers to customer 'C-nobody', which is neither in the file "
        "nor stored",
        "documents[3].service: service 'C00000001-S0' belongs to customer 'C00000001', "
        "not to 'C-nobody'",
    ]


@pytest.mark.usefixtures("small_batches")
def test_ids_given_twice_in_different_batches_are_named_where_they_are(
    db: Database, minimal: dict[str, Any]
) -> None:
    first = minimal["customers"][0]
    others = []
    for number in range(2, 6):
        other = copy.deepcopy(first)
        other["id"] = f"C{number}"
        other["contacts"][0]["id"] = f"C{number}-1"
        other["services"][0]["id"] = f"S{number}"
        others.append(other)
    again = copy.deepcopy(first)
    again["name"] = None
    minimal["customers"] = [first, *others, again]
    assert [str(p) for p in import_text(db, json.dumps(minimal)).problems] == [
        "customers[5].name: required",
        "customers[5]: duplicate customer id 'C1' (also at customers[0])",
        "customers[5].contacts[0]: duplicate contact id 'C1-1' (also at customers[0].contacts[0])",
        "customers[5].services[0]: duplicate service id 'S1' (also at customers[0].services[0])",
    ]


@pytest.mark.usefixtures("small_batches")
def test_a_check_of_a_valid_file_in_many_batches_writes_nothing(db: Database) -> None:
    before = snapshot(db)
    outcome = import_text(db, json.dumps(customers_file(6)), dry_run=True)
    assert outcome.ok and outcome.counts["customers"] == 6
    assert snapshot(db) == before


@pytest.mark.usefixtures("small_batches")
def test_customers_are_written_while_the_file_is_still_being_read(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = json.dumps(customers_file(400)).encode()
    file = io.BytesIO(content)
    read_at_writes: list[int] = []
    write_customers = load.write_customers

    def noting(*args: Any) -> None:
        read_at_writes.append(file.tell())
        write_customers(*args)

    monkeypatch.setattr(load, "write_customers", noting)
    assert import_stream(db, file).ok
    assert len(read_at_writes) == 200  # 400 customers, two a batch
    # The first batch is written when a buffer of the file has been read, not all of it.
    assert read_at_writes[0] <= 2 * 64 * 1024 < len(content) / 2
    assert read_at_writes == sorted(read_at_writes) and read_at_writes[0] < read_at_writes[-1]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 400


def test_a_large_file_that_is_not_json_is_refused_in_the_parser_s_words_with_line_and_column(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.interchange as interchange

    monkeypatch.setattr(interchange, "WHOLE_READ_LIMIT", 0)
    outcome = import_text(db, '{"format": "msgrun/1",\n "organisation": }')
    assert [str(p) for p in outcome.problems] == [
        "not JSON: parse error: unallowed token at this point in JSON text at line 2, column 18"
    ]


def test_a_key_given_twice_inside_a_record_is_named(db: Database, minimal: dict[str, Any]) -> None:
    text = json.dumps(minimal).replace('"name": "Ana', '"name": "Ana", "name": "Ana', 1)
    assert '"name": "Ana", "name"' in text
    problems = [str(p) for p in import_text(db, text).problems]
    assert len(problems) == 1 and problems[0].endswith(".name: given more than once")


def test_a_service_of_a_customer_whose_id_is_not_text_is_not_said_to_be_missing(
    db: Database, minimal: dict[str, Any]
) -> None:
    minimal["customers"][0]["id"] = 42
    outcome = import_text(db, json.dumps(minimal))
    # The service S1 is in the file: only the id and the document's customer are wrong.
    assert [str(p) for p in outcome.problems] == [
        "customers[0].id: expected a string, got a number",
        "documents[0].customer: refers to customer 'C1', which is neither in the file nor stored",
    ]
