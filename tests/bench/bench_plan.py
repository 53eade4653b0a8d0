"""Planner and import benchmark (issue 3). One command:

    scripts/bench plan            # 1,000,000 candidates, 100,000-customer import
    scripts/bench plan --candidates 200000 --import-customers 20000   # quicker

Prints, for planning ``invoice-email`` over a generated data set: the time,
candidates per second, peak memory of the planning process, the time of a raw
``sqlite3`` scan of the same rows (the floor), and the ratio. Then the time of
importing a generated 100,000-customer file into an empty database.
Generated sets are cached under .cache/bench/ (keyed by size, seed and the
generator's version).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import ROOT, measure_in_child, peak_rss_mib

CACHE = ROOT / ".cache" / "bench"
AT = "2026-11-23T10:00:00+11:00"
SEED = 1


def child(*args: str) -> dict[str, Any]:
    return measure_in_child("tests.bench.bench_plan", *args)


# -- the steps, each run in its own process -----------------------------------


def step_plan(db_path: str) -> dict[str, Any]:
    from core.clock import parse_instant
    from core.planner.plan import make_plan
    from core.planner.report import iter_plan_json
    from core.storage import open_database

    database = open_database(f"sqlite:///{db_path}")
    at = parse_instant(AT)
    started = time.perf_counter()
    plan = make_plan(database, "invoice-email", at, environ={})
    planned = time.perf_counter() - started
    planned_peak = peak_rss_mib()
    started = time.perf_counter()
    size = 0
    with open(os.devnull, "w") as sink:
        for piece in iter_plan_json(plan):  # what `msgrun plan --json` writes
            sink.write(piece)
            size += len(piece)
    serialised = time.perf_counter() - started
    return {
        "seconds": planned,
        "json_seconds": serialised,
        "json_mib": size / 2**20,
        "candidates": plan.summary.candidates,
        "summary": {k: v for k, v in plan.summary.as_json().items() if k != "by_reason"},
        "peak_mib": planned_peak,
        "peak_with_json_mib": peak_rss_mib(),
    }


def step_scan(db_path: str) -> dict[str, Any]:
    """The floor: the rows the planner reads, fetched with the bare sqlite3 module."""
    queries = [
        "SELECT id, name, cluster, timezone FROM customer ORDER BY id",
        "SELECT c.customer_id, c.id, c.name, c.allow_email, c.pref_send_invoice_reminders, "
        "a.address, a.address_lower, a.problem, a.pref_invoices "
        "FROM address a JOIN contact c ON a.contact_id = c.id WHERE a.key = 'billing'",
        "SELECT id, customer_id, number, status, service_id, billing_method_id, due_date "
        "FROM document WHERE kind = 'invoice'",
        "SELECT id, status, allow_billing_email FROM service",
    ]
    connection = sqlite3.connect(db_path)
    started = time.perf_counter()
    rows = 0
    for query in queries:
        for _ in connection.execute(query):
            rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_mib": peak_rss_mib()}


def step_import(file_path: str) -> dict[str, Any]:
    from core.interchange import import_stream, open_file
    from core.storage import open_database

    with tempfile.TemporaryDirectory() as folder:
        database = open_database(f"sqlite:///{folder}/import.db")
        started = time.perf_counter()
        with open_file(file_path) as file:  # what `msgrun import FILE` does
            outcome = import_stream(database, file)
        seconds = time.perf_counter() - started
        assert outcome.ok, outcome.problems[:3]
        return {
            "seconds": seconds,
            "counts": outcome.counts,
            "peak_mib": peak_rss_mib(),
            "mib": os.path.getsize(file_path) / 2**20,
        }


# -- the driver ---------------------------------------------------------------


def dataset(candidates: int) -> Path:
    from core.storage import open_database
    from fixtures.generate import GENERATOR_VERSION, load_database

    path = CACHE / f"plan-{candidates}-s{SEED}-v{GENERATOR_VERSION}.db"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        print(
            f"generating {candidates:,} candidates into {path.relative_to(ROOT)} (once)...",
            flush=True,
        )
        started = time.perf_counter()
        database = open_database(f"sqlite:///{partial}")
        load_database(database, candidates=candidates, seed=SEED)
        with database.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        database.dispose()
        partial.rename(path)
        print(f"  generated in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def import_file(customers: int) -> Path:
    from fixtures.generate import GENERATOR_VERSION, generate_document

    path = CACHE / f"import-{customers}-s{SEED}-v{GENERATOR_VERSION}.json"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"generating a {customers:,}-customer file (once)...", flush=True)
        path.write_text(json.dumps(generate_document(customers, SEED)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=1_000_000)
    parser.add_argument("--import-customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2, help="planning runs (the best is kept)")
    parser.add_argument("--step", choices=["plan", "scan", "import"], help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        step = {"plan": step_plan, "scan": step_scan, "import": step_import}[args.step]
        print(json.dumps(step(args.path)))
        return

    db = dataset(args.candidates)
    size = os.path.getsize(db) / 2**20
    plans = [child("--step", "plan", str(db)) for _ in range(args.runs)]
    scans = [child("--step", "scan", str(db)) for _ in range(args.runs)]
    plan = min(plans, key=lambda p: p["seconds"])
    scan = min(scans, key=lambda s: s["seconds"])
    rate = plan["candidates"] / plan["seconds"]
    print()
    print(
        f"Planning invoice-email over {plan['candidates']:,} candidates "
        f"(SQLite, {size:.0f} MiB, best of {args.runs})"
    )
    print(f"  decisions         {plan['summary']}")
    print(
        f"  plan              {plan['seconds']:8.2f} s   {rate:12,.0f} candidates/s   goal <= 20 s"
    )
    print(
        f"  peak memory       {plan['peak_mib']:8.0f} MiB (whole planning process)   "
        f"goal <= 1024 MiB"
    )
    print(f"  raw sqlite3 scan  {scan['seconds']:8.2f} s   {scan['rows']:12,} rows (the floor)")
    print(f"  ratio plan/scan   {plan['seconds'] / scan['seconds']:8.1f} x   goal <= 10 x")
    print(
        f"  + JSON output     {plan['json_seconds']:8.2f} s   {plan['json_mib']:.0f} MiB of text "
        f"(msgrun plan --json); peak with it {plan['peak_with_json_mib']:.0f} MiB"
    )

    file = import_file(args.import_customers)
    result = child("--step", "import", str(file))
    counts = result["counts"]
    print()
    print(
        f"Importing a {args.import_customers:,}-customer file ({result['mib']:.0f} MiB: "
        f"{counts['contacts']:,} contacts, {counts['addresses']:,} addresses, "
        f"{counts['documents']:,} documents) into an empty SQLite database"
    )
    print(
        f"  import            {result['seconds']:8.2f} s   "
        f"{args.import_customers / result['seconds']:12,.0f} customers/s   "
        f"peak {result['peak_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
