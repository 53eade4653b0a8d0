"""``run show --json`` is written a recipient at a time: the same bytes as one JSON
document built whole, and memory that does not grow with the run (tracemalloc: a
bound that does not depend on the machine's speed)."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Sequence

import pytest
from sqlalchemy import insert

from core.storage import Database
from core.storage.models import Customer
from core.views.deliveries import run_deliveries
from core.views.run_json import run_json
from core.views.runs import recipient_json, run_show_json_text
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import BLUE_LAGOON, load_ok, sample
from tests.delivery_support import deliver_now, document, new_run
from tests.test_run_snapshot_memory import snapshot_peak


def whole(
    db: Database, run_id: int, states: Sequence[str] | None, outcomes: Sequence[str] | None
) -> str:
    """The document built whole, as ``run show --json`` printed it before it streamed."""
    shown = run_json(db, run_id, with_recipients=False)
    with db.connect() as connection:
        shown["recipients"] = [
            recipient_json(d) for d in run_deliveries(connection, run_id, states, outcomes)
        ]
    return json.dumps(shown, ensure_ascii=False, indent=2)


@pytest.mark.parametrize(
    ("states", "outcomes"),
    [
        (None, None),
        (["sent"], None),
        (["failed", "sent"], None),
        (["unknown"], None),
        (None, ["bounce"]),
    ],
)
def test_the_streamed_document_is_the_whole_one_byte_for_byte(
    db: Database, states: Sequence[str] | None, outcomes: Sequence[str] | None
) -> None:
    faults = Faults(rcpt={"p1@example.org": ["550 5.1.1 no such user"]})
    with SmtpServer(faults=faults) as server:
        run_id = new_run(db, document(4, server.port))
        deliver_now(db, run_id)
    streamed = "".join(run_show_json_text(db, run_id, states, outcomes))
    assert streamed == whole(db, run_id, states, outcomes)
    assert isinstance(json.loads(streamed)["recipients"], list)


def shown_peak(db: Database, run_id: int) -> int:
    tracemalloc.start()
    try:
        size = sum(len(piece) for piece in run_show_json_text(db, run_id))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 0
    return peak


def test_showing_four_times_the_recipients_takes_no_more_memory(sqlite_db: Database) -> None:
    load_ok(sqlite_db, sample(BLUE_LAGOON))
    with sqlite_db.connect() as connection:  # the customers the made-up candidates name
        connection.execute(
            insert(Customer),
            [{"id": f"C{i:08d}", "name": f"Customer {i}", "attributes": {}} for i in range(12_000)],
        )
    small_run, _ = snapshot_peak(sqlite_db, 3_000)
    large_run, _ = snapshot_peak(sqlite_db, 12_000)
    shown_peak(sqlite_db, small_run)  # warm: statements compiled, caches filled
    small = shown_peak(sqlite_db, small_run)
    large = shown_peak(sqlite_db, large_run)
    # Holding 9,000 more recipients' JSON would take megabytes.
    assert large - small < 512 * 1024, (small, large)
