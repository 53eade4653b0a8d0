"""Scale-out benchmark (issue 6). One command:

    scripts/bench workers                  # 10,000 messages per case
    scripts/bench workers --messages 20000

msgrun workers on PostgreSQL delivering one run to Postfix's smtp-sink, with 1,
2 and 4 ``msgrun worker`` processes (the profile allows 16 connections). Each
case: a fresh run of the same recipients, the workers already started and
idle, timed from the run's creation to its completion. Prints messages per
second, the scaling ratio against one worker (measured in the same run), and
where the CPU went (workers, PostgreSQL, smtp-sink, idle) so the resource that
saturates is named.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.bench_delivery import ensure_postfix_tools, start_sink
from tests.pg_databases import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
MSGRUN = str(Path(sys.executable).with_name("msgrun"))
SERVER = os.environ.get("MSGRUN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_total() -> tuple[float, float]:
    """(busy, all) seconds of CPU time of the whole machine so far."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLOCK_TICKS, sum(fields) / CLOCK_TICKS


def cpu_of(names: tuple[str, ...]) -> float:
    """CPU seconds used so far by every process whose command line holds one of ``names``,
    with its children that have ended (a worker's sender processes, PostgreSQL's
    backends: gone by the end of a case, their time is their parent's then)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if any(name in command for name in names):
            total += sum(int(x) for x in stat[11:15]) / CLOCK_TICKS
    return total


GROUPS = {
    "workers": ("msgrun worker", "child_main"),  # with their sender processes
    "postgresql": ("postgres",),
    "smtp-sink": ("smtp-sink",),
}


def snapshot() -> dict[str, float]:
    busy, everything = cpu_total()
    shot = {name: cpu_of(names) for name, names in GROUPS.items()}
    shot["busy"], shot["all"] = busy, everything
    return shot


def fresh_database() -> tuple[str, str]:
    return create_database(SERVER, "msgrun_bench")


def measure(url: str, workers: int, messages: int) -> dict[str, float]:
    from core.clock import SystemClock, parse_instant
    from core.delivery.starting import create_run
    from core.run_info import get_run
    from core.storage import open_database
    from tests.delivery_support import AT

    env = {**os.environ, "MSGRUN_DB": url}
    processes = [
        subprocess.Popen(
            [MSGRUN, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    database = open_database(url)
    try:
        time.sleep(2.0)  # started and idle
        before = snapshot()
        started = time.perf_counter()
        run_id = create_run(database, "inv", parse_instant(AT), SystemClock())
        deadline = started + 600
        while True:
            run = get_run(database, run_id)
            if run.state not in ("running", "waiting"):
                break
            if time.perf_counter() > deadline:
                raise SystemExit(f"{workers} workers: the run did not finish in 10 minutes")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        after = snapshot()
        assert run.counts["sent"] == messages, run.counts
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)
        database.dispose()
    used = {name: after[name] - before[name] for name in (*GROUPS, "busy", "all")}
    result = {"seconds": seconds, "rate": messages / seconds}
    for name in GROUPS:
        result[f"cpu_{name}"] = used[name] / seconds  # cores
    result["cpu_busy"] = used["busy"] / used["all"] if used["all"] else 0.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    from core.storage import open_database
    from fixtures.smtp_servers import free_port
    from tests.conftest import load_ok
    from tests.delivery_support import document

    ensure_postfix_tools()
    port = free_port()
    sink = start_sink(port)
    name, url = fresh_database()
    try:
        database = open_database(url)
        print(f"importing {args.messages:,} recipients into PostgreSQL ({name})...", flush=True)
        load_ok(database, document(args.messages, port, max_connections=16))
        database.dispose()
        results = {}
        for n in counts:
            print(f"  {n} worker(s)...", flush=True)
            results[n] = measure(url, n, args.messages)
    finally:
        sink.terminate()
        sink.wait()
        drop_database(SERVER, name)

    base = results[counts[0]]["rate"]
    cores = os.cpu_count()
    print()
    print(
        f"Workers on PostgreSQL → smtp-sink, {args.messages:,} messages per case, "
        f"max_connections 16, {cores} cores"
    )
    print(
        "  workers   msg/s   × 1 worker   ÷ N   CPU busy   cores used by: workers  postgres  sink"
    )
    for n in counts:
        r = results[n]
        ratio = r["rate"] / base
        print(
            f"  {n:>7} {r['rate']:7.0f}   {ratio:9.2f}×  {ratio / n:5.2f}   {r['cpu_busy']:7.0%}"
            f"   {r['cpu_workers']:27.2f}  {r['cpu_postgresql']:8.2f}  {r['cpu_smtp-sink']:5.2f}"
        )
    first = results[counts[0]]
    if first["cpu_busy"] > 0:
        ceiling = 1 / first["cpu_busy"]
        print(
            f"  ceiling here: {counts[0]} worker(s) keep the {cores} cores "
            f"{first['cpu_busy']:.0%} busy (workers, PostgreSQL, smtp-sink and the kernel's "
            f"loopback TCP), so more workers can be at most {ceiling:.2f}× faster before "
            "the CPU is saturated"
        )
    last = results[counts[-1]]
    shares = {
        "the workers' own CPU (Python)": last["cpu_workers"],
        "PostgreSQL": last["cpu_postgresql"],
        "smtp-sink": last["cpu_smtp-sink"],
    }
    heaviest = max(shares, key=lambda k: shares[k])
    if last["cpu_busy"] >= 0.85:
        print(
            f"  saturates: the CPU — {cores} cores {last['cpu_busy']:.0%} busy with "
            f"{counts[-1]} workers; the largest user is {heaviest} "
            f"({shares[heaviest]:.2f} cores)"
        )
    else:
        print(
            f"  not CPU-bound ({last['cpu_busy']:.0%} busy): the limit is waiting — "
            f"on {heaviest} most"
        )


if __name__ == "__main__":
    main()
