"""The ledger's fingerprint is spelled out by hand for speed: it must stay what
stored rows hold, the SHA-256 of the entry's fields as ``json.dumps`` writes them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text

from core.storage import Database
from core.storage.ledger import history_fingerprint, history_row, send_key, write_sends
from core.storage.models import History, table_of
from core.storage.sql import driver_instants, remembered
from tests.delivery_support import document, new_run

texts = st.text(max_size=40)  # any text: quotes, backslashes, controls, accents, astral


def stored_fingerprint(row: dict[str, object]) -> str:
    """The formula the rows in existing databases were written with."""
    at = row["at"]
    assert at is None or isinstance(at, datetime)
    key = json.dumps(
        [
            row["definition_id"],
            row["customer_id"],
            row["address_lower"],
            row["document_id"],
            row["offset_days"],
            at.astimezone(UTC).isoformat() if at is not None else None,
            row.get("run_id"),
        ]
    )
    return hashlib.sha256(key.encode()).hexdigest()


@given(
    definition_id=texts,
    customer_id=texts,
    address_lower=st.none() | texts,
    document_id=st.none() | texts,
    offset_days=st.none() | st.integers(-(10**6), 10**6),
    at=st.datetimes(
        min_value=datetime(1970, 1, 2),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))]),
    ),
    run_id=st.none() | st.integers(1, 10**9),
)
def test_the_fingerprint_is_the_one_stored_rows_hold(**row: object) -> None:
    assert history_fingerprint(row) == stored_fingerprint(row)


def test_an_imported_row_without_a_run_id_has_the_same_fingerprint() -> None:
    row: dict[str, object] = {
        "definition_id": "invoices",
        "customer_id": "C-1",
        "address_lower": "jürgen@example.de",
        "document_id": 'INV "7"',
        "offset_days": -3,
        "at": datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
    }
    assert history_fingerprint(row) == stored_fingerprint(row)
    assert len(history_fingerprint(row)) == 64


def test_a_runs_send_is_keyed_by_its_run_and_recipient() -> None:
    sent = dict(
        definition_id="invoices",
        customer_id="C-1",
        address="Ann@Example.com",
        document_id="INV-7",
        offset_days=None,
        at=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
        run_id=12,
    )
    assert history_row(**sent, recipient_id=3456)["fingerprint"] == send_key(12, 3456)
    assert send_key(12, 3456) == "run 12 recipient 3456"
    # An entry of no recipient (a per_trigger target, an import) keeps its fields' key.
    target = history_row(**sent)
    assert target["fingerprint"] == stored_fingerprint(target)
    assert len(target["fingerprint"]) == 64 and " " not in target["fingerprint"]


def test_a_runs_sends_are_written_as_history_row_makes_them(db: Database) -> None:
    """``write_sends`` (the hot path, no dict a row) and ``history_row`` agree."""
    run_id = new_run(db, document(1, 2525))
    at = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=UTC)
    with db.connect() as c:
        r = c.execute(
            text("SELECT id, customer_id, address, document_id, offset_days FROM recipient")
        ).one()
        definition = c.execute(text("SELECT definition_id FROM message_run")).scalar_one()
        write_sends(
            c,
            definition,
            run_id,
            [(r.id, r.customer_id, r.address.upper(), r.document_id, r.offset_days, at)],
            remembered(driver_instants(c)),
        )
    expected = history_row(
        definition_id=definition,
        customer_id=r.customer_id,
        address=r.address.upper(),
        document_id=r.document_id,
        offset_days=r.offset_days,
        at=at,
        run_id=run_id,
        recipient_id=r.id,
    )
    table = table_of(History)
    with db.connect() as c:
        stored = c.execute(select(table).where(table.c.run_id == run_id)).one()._asdict()
    for column, value in expected.items():
        assert stored[column] == value, column
