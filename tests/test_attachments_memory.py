"""A run's memory does not grow with its recipients or their files: messages are built
as they go, each customer's PDF read when its message is built and let go after."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from core.storage import Database
from fixtures.smtp_servers import free_port
from tests.attachment_support import pdf_bytes
from tests.bench.bench_delivery import SINK, start_sink
from tests.delivery_support import deliver_now, document, new_run

PDF = 100 * 1024
COUNT = 300


@pytest.mark.skipif(not Path(SINK).exists(), reason="smtp-sink (Postfix) is not installed")
def test_three_hundred_invoices_of_100_kib_never_held_at_once(db: Database, tmp_path: Path) -> None:
    port = free_port()
    sink = start_sink(port)  # Postfix's smtp-sink, in its own process: keeps nothing here
    try:
        doc = document(COUNT, port)
        doc["organisation"]["documents_folder"] = str(tmp_path)
        for i, item in enumerate(doc["documents"]):
            data = pdf_bytes(f"invoice {i}")
            (tmp_path / f"{i}.pdf").write_bytes(data + bytes([i % 251]) * (PDF - len(data)))
            item["files"] = [{"path": f"{i}.pdf"}]
        run_id = new_run(db, doc)
        tracemalloc.start()
        try:
            delivery = deliver_now(db, run_id, environ={"MSGRUN_SENDER_PROCESSES": "0"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        sink.terminate()
        sink.wait()
    assert delivery.state == "completed" and delivery.sent == COUNT
    # Every message is ~137 KiB encoded: 300 of them are 40 MiB. The delivery holds
    # the messages of its 4 connections (and their reads), not the run's.
    assert peak < 40 * 137 * 1024, f"peak {peak:,} bytes"
