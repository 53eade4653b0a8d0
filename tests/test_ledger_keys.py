"""The ledger's keys: an imported entry's fingerprint stays what stored rows hold; a
run's send is keyed by its run and recipient."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, text

from core.storage import Database
from core.storage.ledger import history_fingerprint, history_row, send_key, write_sends
from core.storage.models import History, table_of
from core.storage.sql import driver_instants, remembered
from tests.delivery_support import document, new_run


def test_an_imported_entrys_fingerprint_is_the_one_stored_rows_hold() -> None:
    """Fingerprints are stored: the same fields must always give the same key."""
    row: dict[str, object] = {
        "definition_id": "invoices",
        "customer_id": "C-1",
        "address_lower": "jürgen@example.de",
        "document_id": 'INV "7"',
        "offset_days": -3,
        "at": datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
    }
    assert history_fingerprint(row) == (
        "26dc36cbd5b535ba9d571bbec87dd07fbfa64d4421860dfdcfb0ae50b47b66b9"
    )


def test_a_runs_send_is_keyed_by_its_run_and_recipient() -> None:
    assert send_key(12, 3456) == "run 12 recipient 3456"
    # Any other entry (an import, a per_trigger target) keeps its fields' SHA-256.
    target = history_row(
        definition_id="invoices",
        customer_id="C-1",
        address=None,
        document_id=None,
        offset_days=None,
        at=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
        run_id=12,
    )
    assert len(target["fingerprint"]) == 64 and " " not in target["fingerprint"]


def test_a_runs_sends_are_written_whole(db: Database) -> None:
    """``write_sends`` (the hot path, no dict a row) writes what ``history_row`` would,
    keyed by ``send_key``; the same send written again is skipped."""
    run_id = new_run(db, document(1, 2525))
    at = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=UTC)
    with db.connect() as c:
        r = c.execute(
            text("SELECT id, customer_id, address, document_id, offset_days FROM recipient")
        ).one()
        definition = c.execute(text("SELECT definition_id FROM message_run")).scalar_one()
        send = (r.id, r.customer_id, r.address.upper(), r.document_id, r.offset_days, at)
        for _ in range(2):
            write_sends(c, definition, run_id, [send], remembered(driver_instants(c)))
    expected = history_row(
        definition_id=definition,
        customer_id=r.customer_id,
        address=r.address.upper(),
        document_id=r.document_id,
        offset_days=r.offset_days,
        at=at,
        run_id=run_id,
    )
    expected["fingerprint"] = send_key(run_id, r.id)
    table = table_of(History)
    with db.connect() as c:
        stored = c.execute(select(table).where(table.c.run_id == run_id)).all()
    assert len(stored) == 1
    for column, value in expected.items():
        assert stored[0]._asdict()[column] == value, column
