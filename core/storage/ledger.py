"""The dedup ledger: history rows, built in one place.

A row says that a definition sent (or, ``per_trigger``, targeted) a
customer's document to an address at an instant; runs write them when a
message is sent or a report proves it was, ``import`` reads them from a
file. The fingerprint makes the same entry stored once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from core.addresses import fold
from core.storage.sql import driver_instants, insert_rows


def history_fingerprint(row: dict[str, Any]) -> str:
    """One key per distinct send, so the same entry imported twice is stored once."""
    at = row["at"]
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


def history_row(
    *,
    definition_id: str,
    customer_id: str,
    address: str | None,
    document_id: str | None,
    offset_days: int | None,
    at: datetime,
    run_id: int | None,
) -> dict[str, Any]:
    """One ledger entry, with its folded address and its fingerprint (imported
    entries, the targets of a ``per_trigger`` run; a run's sends: ``write_sends``)."""
    row: dict[str, Any] = {
        "definition_id": definition_id,
        "customer_id": customer_id,
        "address": address,
        "address_lower": fold(address) if address is not None else None,
        "document_id": document_id,
        "offset_days": offset_days,
        "at": at,
        "run_id": run_id,
    }
    row["fingerprint"] = history_fingerprint(row)
    return row


def send_key(run_id: int, recipient_id: int) -> str:
    """The fingerprint of a run's send to one of its recipients (never a SHA-256's
    64 hex digits: the two kinds of key cannot meet).

    A run's send is one entry whatever its fields: a recipient is sent once, a
    report proving the send afterwards adds nothing, and the keys of a run's sends
    lie side by side in the unique index (a SHA-256 lands anywhere, so every batch
    touched pages all over it)."""
    return f"run {run_id} recipient {recipient_id}"


COLUMNS = (
    "definition_id",
    "customer_id",
    "address",
    "address_lower",
    "document_id",
    "offset_days",
    "at",
    "run_id",
    "fingerprint",
)


def write_history(
    connection: Connection,
    rows: Sequence[dict[str, Any]],
    instant: Callable[[datetime | None], Any] | None = None,
) -> None:
    """Store ledger entries; one already stored (same fingerprint) is skipped.

    Runs write one per message sent, so the rows go through the driver at once.
    """
    if not rows:
        return
    instant = instant or driver_instants(connection)
    insert_rows(
        connection,
        "history",
        COLUMNS,
        [
            (
                row["definition_id"],
                row["customer_id"],
                row["address"],
                row["address_lower"],
                row["document_id"],
                row["offset_days"],
                instant(row["at"]),
                row["run_id"],
                row["fingerprint"],
            )
            for row in rows
        ],
        conflict="ON CONFLICT (fingerprint) DO NOTHING",
    )


def write_sends(
    connection: Connection,
    definition_id: str,
    run_id: int,
    sends: Iterable[tuple[int, str, str | None, str | None, int | None, datetime]],
    instant: Callable[[datetime | None], Any],
) -> None:
    """The ledger entries of a run's sends — (recipient id, customer, address,
    document, offset days, sent at) each — keyed by ``send_key``, without a dict a
    row: a run writes one per message sent, and a report proving a send one more."""
    insert_rows(
        connection,
        "history",
        COLUMNS,
        [
            (
                definition_id,
                customer_id,
                address,
                fold(address) if address is not None else None,
                document_id,
                offset_days,
                instant(at),
                run_id,
                send_key(run_id, recipient_id),
            )
            for recipient_id, customer_id, address, document_id, offset_days, at in sends
        ],
        conflict="ON CONFLICT (fingerprint) DO NOTHING",
    )
