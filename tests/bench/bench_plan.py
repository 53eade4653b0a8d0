"""Import, planning, run creation, run show and export end to end (issues 3 and 29). One command:

    scripts/bench plan                      # a million customers, end to end
    scripts/bench plan --customers 200000   # quicker
    scripts/bench plan --reuse              # from the database the last import left (it is long)

Generates an interchange file of that many customers (cached under
.cache/bench/, keyed by size, seed and the generator's version; written a
batch at a time), then, each step in a fresh process on a new SQLite
database: ``msgrun import FILE``; planning ``invoice-email`` (every candidate
decided, none held), and beside it its reads alone and its reads with a
candidate made for each, no rule asked (what a planner of this shape costs
before it decides); ``msgrun plan invoice-email --json`` to /dev/null;
``msgrun run start invoice-email --detach`` (``create_run``: the run created,
its plan snapshotted); ``msgrun run show RUN --state excluded`` to /dev/null;
``msgrun run export RUN``. Beside each, its time (wall clock; CPU time beside it:
the machine may be shared) and peak memory, and those of its floor, a raw
``sqlite3`` read of the rows it reads (the import's: of the rows it wrote;
planning's and the run's: of the customers, addresses, invoices and services the
planner reads; run show's: of the run's excluded recipients; the export's: of the
run's recipients written with ``csv.writer``), and the ratio. The table is
printed as the steps end, and once more whole at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tests.bench.common import ROOT, measure_in_child, peak_rss_mib

CACHE = ROOT / ".cache" / "bench"
AT = "2026-11-23T10:00:00+11:00"
SEED = 1


_CPU_FROM: list[float] = []
_WALL_FROM: list[float] = []


def start_clock() -> float:
    """A step's own time starts here, once its imports are done: its wall-clock time
    from what this returns, its CPU time (``main``) from the same moment."""
    _CPU_FROM[:] = [time.process_time()]
    _WALL_FROM[:] = [time.perf_counter()]
    return _WALL_FROM[0]


def child(*args: str) -> dict[str, Any]:
    return measure_in_child("tests.bench.bench_plan", *args)


# -- the steps, each run in its own process -----------------------------------


def step_plan(db_path: str) -> dict[str, Any]:
    """Planning alone: every candidate decided and counted, none held (as a run takes them)."""
    from core.clock import parse_instant
    from core.planner.load import load_definition, load_organisation
    from core.planner.plan import Summary, iter_plan
    from core.storage import open_database

    database = open_database(f"sqlite:///{db_path}")
    at = parse_instant(AT)
    started = start_clock()
    summary = Summary()
    with database.connect() as connection:
        organisation = load_organisation(connection)
        definition = load_definition(connection, "invoice-email")
        for _ in iter_plan(connection, organisation, definition, at, summary):
            pass
    return {
        "seconds": time.perf_counter() - started,
        "candidates": summary.candidates,
        "summary": {k: v for k, v in summary.as_json().items() if k != "by_reason"},
        "peak_mib": peak_rss_mib(),
    }


def _planned_pages(db_path: str) -> Iterator[Any]:
    """Planning's pages as it reads them (Python's collector paused, as in planning):
    every page of customers with its addresses, documents, services and ledger, made
    into facts. The step's clock starts once its imports are done, before the first."""
    from core.clock import parse_instant
    from core.planner.load import iter_pages, load_definition, load_organisation
    from core.planner.plan import gc_paused, planning_context, read_ledger
    from core.storage import open_database

    database = open_database(f"sqlite:///{db_path}")
    start_clock()
    with database.connect() as connection, gc_paused():
        definition = load_definition(connection, "invoice-email")
        ctx = planning_context(
            connection, load_organisation(connection), definition, parse_instant(AT)
        )
        for page in iter_pages(connection, definition):
            read_ledger(connection, ctx, page.which)
            yield page


def _since_start() -> float:
    return time.perf_counter() - _WALL_FROM[0]


def step_reads(db_path: str) -> dict[str, Any]:
    """What planning reads, as it reads it (``_planned_pages``); nothing decided."""
    pages = sum(1 for _ in _planned_pages(db_path))
    return {"seconds": _since_start(), "pages": pages, "peak_mib": peak_rss_mib()}


def step_candidates(db_path: str) -> dict[str, Any]:
    """What any planner of this shape costs in Python before it decides anything: its
    pages read as ``reads`` reads them, and one candidate made for each (customer,
    address, document), no rule asked, nothing else."""
    from core.planner.plan import INCLUDED, NO_REASONS, Candidate

    made = 0
    for page in _planned_pages(db_path):
        addresses, documents = page.addresses, page.documents
        for customer in page.customers:
            for document in documents.get(customer.id, ()):
                for address in addresses.get(customer.id, ()):
                    Candidate(
                        customer.id,
                        address.contact_id,
                        address.address,
                        document.id,
                        document.number,
                        INCLUDED,
                        NO_REASONS,
                        None,
                        None,
                    )
                    made += 1
    return {"seconds": _since_start(), "made": made, "peak_mib": peak_rss_mib()}


def step_plan_json(db_path: str) -> dict[str, Any]:
    """``msgrun plan invoice-email --json > /dev/null``: planning and its JSON, end to end."""
    from core.planner.report import stream_plan_json

    return _written(db_path, stream_plan_json, "json_mib")


def step_plan_text(db_path: str) -> dict[str, Any]:
    """``msgrun plan invoice-email > /dev/null``: planning and its text, end to end."""
    from tui.plan_text import stream_plan_text

    return _written(db_path, stream_plan_text, "text_mib")


def _written(db_path: str, stream: Callable[..., Iterable[str]], key: str) -> dict[str, Any]:
    """A plan written out by ``stream`` to /dev/null: its time, size (``key``), peak."""
    from core.clock import parse_instant
    from core.storage import open_database

    database = open_database(f"sqlite:///{db_path}")
    started = start_clock()
    size = 0
    with open(os.devnull, "w") as sink:
        for piece in stream(database, "invoice-email", parse_instant(AT), {}):
            sink.write(piece)
            size += len(piece)
    return {"seconds": time.perf_counter() - started, key: size / 2**20, "peak_mib": peak_rss_mib()}


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
        # The ledger (rules 16-17), the unsubscribes (rule 6) and the suppressions (rule 5).
        "SELECT customer_id, address_lower, document_id, offset_days, at, run_id FROM history "
        "WHERE definition_id = 'invoice-email'",
        "SELECT contact_id, address_lower, at, how, run_id FROM unsubscribe",
        "SELECT address_lower, address, reason, since, report_id, run_id, detail FROM suppression",
    ]
    connection = sqlite3.connect(db_path)
    started = start_clock()
    rows = 0
    for query in queries:
        for _ in connection.execute(query):
            rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_mib": peak_rss_mib()}


def step_import(file_path: str, db_path: str) -> dict[str, Any]:
    """``msgrun import FILE`` into a new database at ``db_path``."""
    from core.interchange import import_stream, open_file
    from core.storage import open_database

    database = open_database(f"sqlite:///{db_path}")
    started = start_clock()
    with open_file(file_path) as file:  # what `msgrun import FILE` does
        outcome = import_stream(database, file)
    seconds = time.perf_counter() - started
    assert outcome.ok, outcome.problems[:3]
    with database.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return {
        "seconds": seconds,
        "counts": outcome.counts,
        "peak_mib": peak_rss_mib(),
        "mib": os.path.getsize(file_path) / 2**20,
    }


IMPORTED = ("customer", "contact", "address", "service", "document", "suppression", "history")


def step_import_floor(db_path: str) -> dict[str, Any]:
    """The import's floor: a raw ``sqlite3`` read of every row it wrote."""
    connection = sqlite3.connect(db_path)
    started = start_clock()
    rows = 0
    for table in IMPORTED:
        for _ in connection.execute(f"SELECT * FROM {table}"):
            rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_mib": peak_rss_mib()}


def step_run(db_path: str) -> dict[str, Any]:
    """``msgrun run start invoice-email --detach`` (the function it calls): the run
    created, its plan snapshotted."""
    from core.clock import SystemClock, parse_instant
    from core.delivery.starting import create_run
    from core.storage import open_database

    database = open_database(f"sqlite:///{db_path}")
    started = start_clock()
    run_id = create_run(database, "invoice-email", parse_instant(AT), SystemClock(), environ={})
    seconds = time.perf_counter() - started
    with database.engine.connect() as connection:
        recipients = connection.exec_driver_sql(
            f"SELECT count(*) FROM recipient WHERE run_id = {run_id}"
        ).scalar_one()
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"seconds": seconds, "run": run_id, "recipients": recipients, "peak_mib": peak_rss_mib()}


def cli_quietly(*argv: str) -> int:
    """``msgrun ARGV``, its standard output thrown away."""
    from tui import cli

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        return cli.main(list(argv))


SHOWN = "excluded"  # run show --state: most of a new run's recipients are excluded here


def step_show(db_path: str, run_id: str) -> dict[str, Any]:
    """``msgrun run show RUN --state excluded > /dev/null``."""
    started = start_clock()
    code = cli_quietly("run", "show", run_id, "--state", SHOWN, "--db", f"sqlite:///{db_path}")
    if code != 0:
        raise SystemExit(f"msgrun run show exited {code}")
    return {"seconds": time.perf_counter() - started, "peak_mib": peak_rss_mib()}


def step_show_floor(db_path: str, run_id: str) -> dict[str, Any]:
    """run show's floor: the run's recipients in that state, in plan order, raw."""
    connection = sqlite3.connect(db_path)
    started = start_clock()
    rows = 0
    for _ in connection.execute(
        "SELECT * FROM recipient WHERE run_id = ? AND state = ? ORDER BY position",
        (int(run_id), SHOWN),
    ):
        rows += 1
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_mib": peak_rss_mib()}


def step_export(db_path: str, run_id: str, out: str) -> dict[str, Any]:
    """``msgrun run export RUN --out FILE``."""
    started = start_clock()
    code = cli_quietly(
        "run", "export", run_id, "--out", out, "--force", "--db", f"sqlite:///{db_path}"
    )
    if code != 0:
        raise SystemExit(f"msgrun run export exited {code}")
    return {
        "seconds": time.perf_counter() - started,
        "peak_mib": peak_rss_mib(),
        "mib": os.path.getsize(out) / 2**20,
    }


def step_export_floor(db_path: str, run_id: str, out: str) -> dict[str, Any]:
    """The export's floor: the run's recipients and their customers' names, raw, to CSV."""
    connection = sqlite3.connect(db_path)
    started = start_clock()
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for row in connection.execute(
            "SELECT r.customer_id, c.name, r.address, r.document_id, r.label, r.state, "
            "r.smtp_code, r.smtp_reply, r.reasons, r.attempts, r.updated_at, r.message_id "
            "FROM recipient r LEFT JOIN customer c ON c.id = r.customer_id "
            "WHERE r.run_id = ? ORDER BY r.position",
            (int(run_id),),
        ):
            writer.writerow(row)
    return {"seconds": time.perf_counter() - started, "peak_mib": peak_rss_mib()}


def step_follow_up(db_path: str, run_id: str) -> dict[str, Any]:
    """``msgrun run follow-up RUN --state excluded --detach`` (the run stopped first: no
    process delivers it): every excluded recipient planned again, as a new run."""
    url = f"sqlite:///{db_path}"
    if cli_quietly("run", "stop", run_id, "--db", url) != 0:
        raise SystemExit(f"msgrun run stop {run_id} failed")
    started = start_clock()
    code = cli_quietly("run", "follow-up", run_id, "--state", SHOWN, "--detach", "--db", url)
    if code != 0:
        raise SystemExit(f"msgrun run follow-up exited {code}")
    seconds = time.perf_counter() - started
    connection = sqlite3.connect(db_path)
    (recipients,) = connection.execute(
        "SELECT count(*) FROM recipient WHERE run_id = (SELECT max(id) FROM message_run)"
    ).fetchone()
    return {"seconds": seconds, "recipients": recipients, "peak_mib": peak_rss_mib()}


def step_follow_up_floor(db_path: str, run_id: str) -> dict[str, Any]:
    """The follow-up's floor: the chosen recipients of the run, raw, and the planner's scan."""
    cpu = time.process_time()
    shown = step_show_floor(db_path, run_id)
    scan = step_scan(db_path)
    return {
        "cpu": time.process_time() - cpu,
        "seconds": shown["seconds"] + scan["seconds"],
        "rows": shown["rows"] + scan["rows"],
        "peak_mib": peak_rss_mib(),
    }


STEPS: dict[str, Any] = {
    "import": step_import,
    "plan": step_plan,
    "plan-json": step_plan_json,
    "plan-text": step_plan_text,
    "reads": step_reads,
    "candidates": step_candidates,
    "scan": step_scan,
    "import-floor": step_import_floor,
    "run": step_run,
    "show": step_show,
    "show-floor": step_show_floor,
    "export": step_export,
    "export-floor": step_export_floor,
    "follow-up": step_follow_up,
    "follow-up-floor": step_follow_up_floor,
}


# -- the driver ---------------------------------------------------------------


def import_file(customers: int) -> Path:
    from fixtures.generate import GENERATOR_VERSION, write_document

    path = CACHE / f"import-{customers}-s{SEED}-v{GENERATOR_VERSION}.json"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"generating a {customers:,}-customer file (once)...", flush=True)
        partial = path.with_suffix(".partial")
        write_document(customers, partial, SEED)
        partial.rename(path)
    return path


def best(*args: str, runs: int) -> dict[str, Any]:
    return min((child(*args) for _ in range(runs)), key=lambda result: float(result["seconds"]))


HEADER = (
    f"  {'step':<13}{'time':>8}  {'cpu':>7}  {'peak':>8}   {'floor':>7}  {'cpu':>6}  {'peak':>7}"
    f"  {'ratio':>6}  {'cpu':>6}   what"
)


def line(step: str, ours: dict[str, Any], floor: dict[str, Any], what: str) -> str:
    """One row: the step's wall time, CPU time and peak memory; its floor's; and
    the ratios of their wall times and of their CPU times (the machine may be shared)."""

    def cpu(result: dict[str, Any], width: int) -> str:  # "-": an import measured before
        return f"{result['cpu']:{width}.1f}s" if "cpu" in result else "-".rjust(width + 1)

    cpu_ratio = f"{ours['cpu'] / floor['cpu']:5.1f}x" if "cpu" in ours else "     -"
    text = (
        f"  {step:<13}{ours['seconds']:7.1f}s  {cpu(ours, 6)}  {ours['peak_mib']:4.0f} MiB"
        f"   {floor['seconds']:6.1f}s  {cpu(floor, 5)}  {floor['peak_mib']:3.0f} MiB"
        f"  {ours['seconds'] / floor['seconds']:5.1f}x  {cpu_ratio}   {what}"
    )
    print(text, flush=True)
    return text


def end_to_end(customers: int, runs: int, reuse: bool) -> None:
    """Import, plan, run creation, run show, export and follow-up of a
    ``customers``-customer organisation."""
    file = import_file(customers)
    db = CACHE / f"e2e-{customers}.db"
    # The database as the import left it, kept for --reuse: a run the steps create
    # changes what the next plan decides (its candidates are under way).
    pristine = CACHE / f"e2e-{customers}.imported.db"
    imported_json = CACHE / f"e2e-{customers}.import.json"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if reuse and pristine.exists() and imported_json.exists():
        shutil.copyfile(pristine, db)
    else:
        pristine.unlink(missing_ok=True)
        imported_json.unlink(missing_ok=True)
    print(
        f"\nEnd to end: {customers:,} customers ({os.path.getsize(file) / 2**20:,.0f} MiB of "
        f"JSON), SQLite; each step in a fresh process; time is wall clock, cpu the step's "
        f"own; floor = a raw read of its rows (best of {runs}); ratios: of the times, of the cpu",
        flush=True,
    )
    print(HEADER, flush=True)
    table = []
    if imported_json.exists():
        imported = json.loads(imported_json.read_text())
        print(f"  (the import: {db.name}, imported before)", flush=True)
    else:
        imported = child("--step", "import", str(file), str(db))
        shutil.copyfile(db, pristine)
        imported_json.write_text(json.dumps(imported))
    floor = best("--step", "import-floor", str(db), runs=runs)
    counts = imported["counts"]
    what = f"{sum(counts.values()):,} records ({counts['documents']:,} documents)"
    table.append(line("import", imported, floor, what))
    scan = best("--step", "scan", str(db), runs=runs)
    plan = best("--step", "plan", str(db), runs=runs)
    reads = best("--step", "reads", str(db), runs=runs)
    table.append(line("plan", plan, scan, f"{plan['candidates']:,} candidates  {plan['summary']}"))
    made = best("--step", "candidates", str(db), runs=runs)
    table.append(
        line(
            "  its reads",
            reads,
            scan,
            f"its {reads['pages']:,} pages read as it reads them, nothing decided: planning "
            f"is {plan['cpu'] / reads['cpu']:.1f}x its reads in cpu",
        )
    )
    table.append(
        line(
            "  +candidates",
            made,
            scan,
            f"its reads and a candidate made for each of {made['made']:,}, no rule asked",
        )
    )
    plan_json = child("--step", "plan-json", str(db))
    table.append(line("plan --json", plan_json, scan, f"{plan_json['json_mib']:,.0f} MiB of JSON"))
    plan_text = child("--step", "plan-text", str(db))
    table.append(line("plan (text)", plan_text, scan, f"{plan_text['text_mib']:,.0f} MiB of text"))
    run = child("--step", "run", str(db))
    run_id = str(run["run"])
    table.append(line("run start", run, scan, f"run {run_id}: {run['recipients']:,} recipients"))
    show = child("--step", "show", str(db), run_id)
    show_floor = best("--step", "show-floor", str(db), run_id, runs=runs)
    table.append(line("run show", show, show_floor, f"--state {SHOWN}: {show_floor['rows']:,}"))
    out = str(CACHE / "e2e-export.csv")
    export = child("--step", "export", str(db), run_id, out)
    export_floor = best("--step", "export-floor", str(db), run_id, out, runs=runs)
    table.append(line("run export", export, export_floor, f"{export['mib']:,.0f} MiB of CSV"))
    Path(out).unlink(missing_ok=True)
    follow_floor = best("--step", "follow-up-floor", str(db), run_id, runs=runs)
    followed = child("--step", "follow-up", str(db), run_id)
    table.append(
        line(
            "follow-up",
            followed,
            follow_floor,
            f"--state {SHOWN}: a new run of {followed['recipients']:,}",
        )
    )
    print(
        f"\n{customers:,} customers, {time.strftime('%Y-%m-%d %H:%M')}:", HEADER, *table, sep="\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000, help="end to end: this many")
    parser.add_argument("--runs", type=int, default=2, help="of plan and floors (the best is kept)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="start from a copy of the database the last import of this size left",
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        if args.step not in STEPS:
            parser.error(f"--step {args.step}: not a step ({', '.join(STEPS)})")
        cpu = time.process_time()
        result = STEPS[args.step](*args.paths)
        result.setdefault("cpu", time.process_time() - (_CPU_FROM[0] if _CPU_FROM else cpu))
        sys.stdout.flush()
        print(json.dumps(result))
        CACHE.mkdir(parents=True, exist_ok=True)
        with (CACHE / "steps.jsonl").open("a") as log:  # every measurement, kept
            log.write(json.dumps({"step": args.step, "paths": args.paths, **result}) + "\n")
        return
    if args.customers < 1:
        parser.error(f"--customers {args.customers}: give 1 or more")
    end_to_end(args.customers, args.runs, args.reuse)


if __name__ == "__main__":
    main()
