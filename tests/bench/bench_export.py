"""Export benchmark (issue 18). One command:

    scripts/bench export                      # 100,000 and 1,000,000 recipients
    scripts/bench export --sizes 20000 200000 # quicker

For each size, a SQLite database holding one run of that many recipients
(generated straight into the tables, cached under .cache/bench/), then, each
in a fresh process: ``msgrun run export RUN --out FILE`` as a user runs it
(its rate and peak memory), and the floor: a raw ``sqlite3`` scan of the same
columns written with ``csv.writer`` (no filters, no outcomes, no reasons
decoded). Prints msgrun's time as a multiple of the floor, and the peak
memory at each size: constant memory means the largest size peaks no higher
than the smallest, give or take the interpreter's own.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.common import ROOT, measure_in_child, peak_rss_mib

CACHE = ROOT / ".cache" / "bench"
VERSION = 1


def child(*args: str) -> dict[str, Any]:
    return measure_in_child("tests.bench.bench_export", *args)


def build(size: int) -> Path:
    """A database with one run of ``size`` recipients (a quarter failed, some excluded)."""
    path = CACHE / f"export-{size}-v{VERSION}.db"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    from core.clock import SystemClock, parse_instant
    from core.delivery.starting import create_run
    from core.storage import open_database
    from tests.conftest import MINIMAL, load_ok

    database = open_database(f"sqlite:///{partial}")
    load_ok(database, MINIMAL)
    run_id = create_run(database, "inv", parse_instant("2026-11-23T10:00:00+00:00"), SystemClock())
    database.dispose()
    raw = sqlite3.connect(partial)
    raw.execute("DELETE FROM recipient WHERE run_id = ?", (run_id,))
    customers = ((f"C{i:07d}", f'Customer {i}, "the {i}th"', None, None, "{}") for i in range(size))
    raw.executemany(
        "INSERT OR IGNORE INTO customer (id, name, cluster, timezone, attributes) "
        "VALUES (?, ?, ?, ?, ?)",
        customers,
    )

    def recipients() -> Any:
        for i in range(size):
            excluded = i % 10 == 9
            state = "excluded" if excluded else ("failed" if i % 4 == 1 else "sent")
            reasons = (
                '[{"code": "suppressed", "detail": "hard_bounce since 2026-11-01"}]'
                if excluded
                else "[]"
            )
            yield (
                run_id,
                i,
                f"C{i:07d}",
                f"C{i:07d}-1",
                f"p{i}@example.org",
                f"D{i:07d}",
                f"2026-{i:07d}",
                "excluded" if excluded else "included",
                reasons,
                state,
                None if excluded else (550 if state == "failed" else 250),
                None if excluded else ("5.1.1 user unknown" if state == "failed" else "2.0.0 Ok"),
                None if excluded else f"<msgrun.{run_id}.{i}.bench@example.com>",
                0 if excluded else 1,
                "2026-11-23 10:00:00.000000",
            )

    raw.executemany(
        "INSERT INTO recipient (run_id, position, customer_id, contact_id, address, document_id, "
        "label, decision, reasons, state, smtp_code, smtp_reply, message_id, attempts, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        recipients(),
    )
    raw.commit()
    raw.close()
    partial.rename(path)
    return path


# -- the steps, each run in its own process -----------------------------------


def step_msgrun(db_path: str, out: str) -> dict[str, Any]:
    from tui import cli

    started = time.perf_counter()
    code = cli.main(["run", "export", "1", "--out", out, "--force", "--db", f"sqlite:///{db_path}"])
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"msgrun run export exited {code}")
    return {"seconds": seconds, "peak_mib": peak_rss_mib(), "bytes": os.path.getsize(out)}


def step_floor(db_path: str, out: str) -> dict[str, Any]:
    started = time.perf_counter()
    raw = sqlite3.connect(db_path)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for row in raw.execute(
            "SELECT r.customer_id, c.name, r.address, r.document_id, r.label, r.state, "
            "r.smtp_code, r.smtp_reply, r.reasons, r.attempts, r.updated_at, r.message_id "
            "FROM recipient r LEFT JOIN customer c ON c.id = r.customer_id "
            "WHERE r.run_id = 1 ORDER BY r.position"
        ):
            writer.writerow(row)
    return {"seconds": time.perf_counter() - started, "peak_mib": peak_rss_mib()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench export")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--step", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        kind, db_path, out = args.step
        result = step_msgrun(db_path, out) if kind == "msgrun" else step_floor(db_path, out)
        print(json.dumps(result))
        return 0
    out = str(CACHE / "export-out.csv")
    print(
        f"{'recipients':>11}  {'msgrun s':>9}  {'rows/s':>9}  {'peak MiB':>8}  "
        f"{'floor s':>8}  {'× floor':>7}"
    )
    for size in args.sizes:
        print(f"(building a run of {size:,} recipients when not cached)", file=sys.stderr)
        db_path = str(build(size))
        ours = child("--step", "msgrun", db_path, out)
        floor = child("--step", "floor", db_path, out)
        print(
            f"{size:>11,}  {ours['seconds']:>9.2f}  {size / ours['seconds']:>9,.0f}  "
            f"{ours['peak_mib']:>8.0f}  {floor['seconds']:>8.2f}  "
            f"{ours['seconds'] / floor['seconds']:>7.1f}"
        )
    Path(out).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
