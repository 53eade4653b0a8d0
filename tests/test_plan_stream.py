"""``msgrun plan``, as text and as JSON, is written a candidate at a time: four times the
customers take no more memory (Python's own allocations, counted by tracemalloc: a bound
that does not depend on the machine's speed), and the text is the text of the whole plan."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

import pytest

from core.clock import parse_instant
from core.planner import load, report
from core.planner.plan import make_plan
from core.planner.report import stream_plan_json
from core.storage import Database, open_database
from core.views.plans import plan_preview
from fixtures.generate import generate_document
from tests.conftest import load_ok
from tui.plan_text import HEADER, Columns, _rows, plan_text, stream_plan_text

AT = parse_instant("2026-11-23T10:00:00+11:00")
Stream = Callable[[Database, str, datetime, Mapping[str, str] | None], Iterator[str]]


def written_peak(db: Database, stream: Stream) -> tuple[int, int]:
    """How many characters ``stream`` writes of the plan, and the peak of Python's memory
    while it planned and wrote them."""
    tracemalloc.start()
    try:
        size = sum(len(piece) for piece in stream(db, "invoice-email", AT, {}))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return size, peak


@pytest.mark.parametrize("stream", [stream_plan_text, stream_plan_json], ids=["text", "json"])
def test_writing_the_plan_of_four_times_the_customers_takes_no_more_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: Stream
) -> None:
    monkeypatch.setattr(load, "PAGE", 50)
    # The JSON is given out from its temporary file a chunk at a time: a chunk smaller
    # than the smallest plan here, so that both plans are read in whole chunks.
    monkeypatch.setattr(report, "SPOOL_CHUNK", 1 << 16)
    sizes, peaks = [], []
    for customers in (500, 500, 2000):  # the first warms statements and caches
        db = open_database(f"sqlite:///{tmp_path}/p{customers}-{len(peaks)}.db")
        load_ok(db, generate_document(customers, seed=3))
        size, peak = written_peak(db, stream)
        sizes.append(size)
        peaks.append(peak)
        db.dispose()
    assert sizes[2] > 3 * sizes[1]  # four times the plan was written
    # The text plan held whole, as `msgrun plan` did before, added some 6 MiB here.
    assert peaks[2] < peaks[1] + 1024 * 1024, peaks


def test_the_text_streamed_is_the_text_of_the_whole_plan(db: Database) -> None:
    load_ok(db, generate_document(60, seed=5))
    whole = plan_text(make_plan(db, "invoice-email", AT, environ={}))
    assert "".join(stream_plan_text(db, "invoice-email", AT, {})) == whole
    assert whole.count("\n") > 200


def test_a_plan_without_candidates_says_so(db: Database) -> None:
    load_ok(db, generate_document(3, seed=5))
    with db.connect() as connection:
        connection.exec_driver_sql("DELETE FROM history")
        connection.exec_driver_sql("DELETE FROM document")
    text = "".join(stream_plan_text(db, "invoice-email", AT, {}))
    assert text == plan_text(make_plan(db, "invoice-email", AT, environ={}))
    assert text.endswith("Candidates:\n  (no candidates)")


def test_the_console_s_preview_holds_the_first_candidates_and_counts_them_all(
    db: Database,
) -> None:
    load_ok(db, generate_document(40, seed=5))
    whole = make_plan(db, "invoice-email", AT, environ={})
    preview = plan_preview(db, "invoice-email", AT, keep=10)
    assert [repr(c) for c in preview.candidates] == [repr(c) for c in whole.candidates[:10]]
    assert preview.summary == whole.summary and whole.summary.candidates > 40
    assert preview.warnings == whole.warnings


def preview_peak(db: Database) -> int:
    tracemalloc.start()
    try:
        assert len(plan_preview(db, "invoice-email", AT, keep=100).candidates) == 100
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_previewing_four_times_the_customers_takes_no_more_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load, "PAGE", 50)
    peaks = []
    for customers in (500, 500, 2000):  # the first warms statements and caches
        db = open_database(f"sqlite:///{tmp_path}/v{customers}-{len(peaks)}.db")
        load_ok(db, generate_document(customers, seed=3))
        peaks.append(preview_peak(db))
        db.dispose()
    # The whole plan held, as the console's preview did before, added some 4 MiB here.
    assert peaks[2] < peaks[1] + 1024 * 1024, peaks


@pytest.mark.parametrize("count", [998, 999, 1000])
def test_the_text_is_the_same_whichever_line_a_batch_ends_on(count: int) -> None:
    """Lines are given out a thousand at a time: the text does not change with where."""
    columns = Columns()
    rows = [f'["C{i}", "a{i}@example.org", "D{i}", "-", "included"]\n' for i in range(count)]
    spool = io.StringIO("".join(rows))
    streamed = "".join(_rows(spool, ["head", "", "Candidates:"], columns, count))
    lines = ["head", "", "Candidates:", columns.line(HEADER)]
    lines += [
        columns.line((f"C{i}", f"a{i}@example.org", f"D{i}", "-", "included")) for i in range(count)
    ]
    assert streamed == "\n".join(lines)
