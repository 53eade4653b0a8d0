"""Console benchmark (issue 5). One command:

    scripts/bench console

- start: from creating the app to the Runs screen painted with its data;
- key-to-repaint: while a separate process delivers a 100,000-recipient run at a
  fixed 2,000 messages a second (the profile's rate, to Postfix's smtp-sink: the
  figure does not depend on how much CPU a faster delivery would take), the time
  from a key in the run screen (next window, previous window) to the table
  showing the new rows;
- on PostgreSQL: from a run created by another process (its transaction
  committed) to the console's Runs screen showing it, with the console's usual
  poll of 0.5 s (LISTEN/NOTIFY wakes it: goal <= 200 ms);
- memory: the console process's peak RSS with a 10,000- and a 100,000-recipient
  run open (the table is a window: it should not grow with the run).
Each measurement runs in a fresh process. Goals: start <= 1 s, repaint <= 50 ms,
memory flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.common import ROOT, measure_in_child, peak_rss_mib

CACHE = ROOT / ".cache" / "bench"


RATE = 2000.0  # messages a second, the delivering process's (the profile's rate)


def build(recipients: int, port: int) -> Path:
    """A database with one run of ``recipients`` recipients, its profile at ``RATE``."""
    from core.clock import SystemClock
    from core.storage import open_database
    from tests.delivery_support import document, new_run

    path = CACHE / f"console-{recipients}.db"
    if path.exists():
        path.unlink()
    CACHE.mkdir(parents=True, exist_ok=True)
    database = open_database(f"sqlite:///{path}")
    new_run(
        database,
        document(recipients, port, max_connections=4, rate_per_second=RATE),
        clock=SystemClock(),
    )
    database.dispose()
    return path


async def measure(path: Path, presses: int) -> dict[str, Any]:
    from core.storage import open_database
    from tui.console.app import MsgrunConsole
    from tui.console.run_screen import RunScreen

    started = time.perf_counter()
    app = MsgrunConsole(open_database(f"sqlite:///{path}"), poll_seconds=0.5, still=True)
    latencies: list[float] = []
    async with app.run_test(size=(100, 32)) as pilot:
        while not app.screen.query("#runs") or not app.screen.runs:  # type: ignore[attr-defined]
            await pilot.pause(0.005)
        start_seconds = time.perf_counter() - started
        await app.push_screen(RunScreen(1))
        screen = app.screen
        assert isinstance(screen, RunScreen)
        while not screen.rows:
            await pilot.pause(0.005)
        # Repainted: the screen has shown the new window and the compositor has
        # drawn the frame after it (call_after_refresh runs once it is on screen).
        painted = asyncio.Event()
        shown = screen.show

        def show(data: Any) -> None:
            shown(data)
            screen.call_after_refresh(painted.set)

        screen.show = show  # type: ignore[method-assign]
        for i in range(presses):
            # next window, then back: each key makes the console read and paint 50 rows.
            # The key is posted as a terminal would send it (Pilot's press also waits
            # for the app to go idle, which is not what an operator waits for).
            key = "space" if i % 2 == 0 else "b"
            await pilot.pause(0.05)
            painted.clear()
            pressed = time.perf_counter()
            app.simulate_key(key)
            await asyncio.wait_for(painted.wait(), 10)
            latencies.append(time.perf_counter() - pressed)
    return {"start": start_seconds, "latencies": latencies, "rss": peak_rss_mib()}


def sent_of(path: Path) -> int:
    from core.run_info import get_run
    from core.storage import open_database

    database = open_database(f"sqlite:///{path}")
    try:
        return get_run(database, 1).counts["sent"]
    finally:
        database.dispose()


async def hear(url: str, times: int) -> dict[str, Any]:
    """Seconds from each run created elsewhere to the Runs screen showing it (PostgreSQL)."""
    import threading

    from core.clock import SystemClock, parse_instant
    from core.delivery.starting import create_run
    from core.storage import open_database
    from tests.conftest import load_ok
    from tests.delivery_support import AT, document
    from tui.console.app import MsgrunConsole

    database = open_database(url)
    load_ok(database, document(3, 2525))
    other = open_database(url)  # another process's connections
    app = MsgrunConsole(database, poll_seconds=0.5, still=True)
    seconds: list[float] = []
    async with app.run_test(size=(100, 32)) as pilot:
        assert app.run_changes is not None
        await asyncio.to_thread(app.run_changes.listening.wait, 10)
        screen = app.screen
        for _ in range(times):
            await pilot.pause(0.3)
            made: list[int] = []
            thread = threading.Thread(
                target=lambda made=made: made.append(
                    create_run(other, "inv", parse_instant(AT), SystemClock())
                )
            )
            thread.start()
            thread.join()
            committed = time.perf_counter()
            while not any(r.run.id == made[0] for r in screen.items):  # type: ignore[attr-defined]
                await asyncio.sleep(0.002)
            seconds.append(time.perf_counter() - committed)
    return {"seconds": seconds}


def step(path: str, presses: str) -> None:
    result = asyncio.run(measure(Path(path), int(presses)))
    print(json.dumps(result))


def pg_notice_latencies() -> list[float]:
    from tests.conftest import _pg_server_url
    from tests.pg_databases import create_database, drop_database

    server = _pg_server_url()
    if server is None:
        return []
    name, url = create_database(server, "msgrun_bench")
    try:
        return list(child("--hear", url, "10")["seconds"])
    finally:
        drop_database(server, name)


def child(*args: str) -> dict[str, Any]:
    return measure_in_child("tests.bench.bench_console", *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--step", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--hear", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        step(*args.step)
        return
    if args.hear:
        print(json.dumps(asyncio.run(hear(args.hear[0], int(args.hear[1])))))
        return

    from fixtures.smtp_servers import free_port
    from tests.bench.bench_delivery import ensure_postfix_tools, start_sink

    ensure_postfix_tools()
    port = free_port()
    sink = start_sink(port)
    try:
        print(f"building runs of {args.small:,} and {args.large:,} recipients...", flush=True)
        small, large = build(args.small, port), build(args.large, port)
        quiet_small = child("--step", str(small), "4")
        quiet_large = child("--step", str(large), str(args.presses))
        # Now the same while another process delivers the large run at RATE.
        delivering = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "--db", f"sqlite:///{large}", "run", "restart", "1"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2)
        sent_before, at_before = sent_of(large), time.monotonic()
        try:
            busy = child("--step", str(large), str(args.presses))
            rate = (sent_of(large) - sent_before) / (time.monotonic() - at_before)
        finally:
            delivering.terminate()
            delivering.wait(30)
    finally:
        sink.terminate()
        sink.wait()
    heard = pg_notice_latencies()
    latencies = sorted(busy["latencies"])
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    quiet = sorted(quiet_large["latencies"])
    quiet_p95 = quiet[int(0.95 * (len(quiet) - 1))]
    print()
    print(f"Console (headless, 100x32), SQLite, {os.cpu_count()} cores")
    print(
        f"  start to first painted Runs screen   {quiet_large['start'] * 1000:7.0f} ms"
        "   goal <= 1000 ms"
    )
    print(
        f"  key to repaint with nothing delivering: median {statistics.median(quiet) * 1000:.1f} ms"
        f"   p95 {quiet_p95 * 1000:.1f} ms   ({len(quiet)} keys)"
    )
    print(
        f"  key to repaint while a {args.large:,}-recipient run delivers at "
        f"{RATE:,.0f} msg/s (measured meanwhile: {rate:,.0f} msg/s):"
    )
    print(
        f"    median {statistics.median(latencies) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms   "
        f"max {latencies[-1] * 1000:6.1f} ms   ({len(latencies)} keys)   goal <= 50 ms"
    )
    if heard:
        print(
            "  PostgreSQL: a run created by another process, to the Runs screen showing it: "
            f"median {statistics.median(heard) * 1000:.0f} ms, max {max(heard) * 1000:.0f} ms "
            f"({len(heard)} runs; the poll is every 500 ms)   goal <= 200 ms"
        )
    else:
        print("  PostgreSQL: not reachable (MSGRUN_TEST_PG), not measured")
    print(f"  console peak RSS with a {args.small:,}-recipient run   {quiet_small['rss']:6.0f} MiB")
    print(
        f"  console peak RSS with a {args.large:,}-recipient run  {quiet_large['rss']:6.0f} MiB "
        f"(flat: the table is a window of the database)"
    )


if __name__ == "__main__":
    main()
