"""`msgrun worker` reads the sources of MSGRUN_BOUNCE_SOURCES on a timer; what goes
wrong there is reported and never ends the worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from core.bounces.store import ReadSummary
from core.clock import SystemClock
from core.storage import Database
from core.storage.models import BounceReport, RecipientOutcome
from core.worker import work
from tests.bounce_support import postfix_dsn, sent_run
from tests.conftest import url_of


def maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def stored_reports(db: Database) -> int:
    with db.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(BounceReport)).scalar_one())


def run_worker(
    db: Database,
    environ: dict[str, str],
    until: Callable[[], bool],
    read: list[ReadSummary],
    errors: list[BaseException],
    seconds: float = 60,
) -> None:
    """A worker reading every 0.1 s, until ``until()``; what it read and the errors."""

    async def main() -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            deadline = time.monotonic() + seconds
            try:
                while not await asyncio.to_thread(until):
                    assert time.monotonic() < deadline, "the worker did not read in time"
                    await asyncio.sleep(0.05)
            finally:
                stop.set()

        watcher = asyncio.create_task(watch())
        await work(
            db,
            SystemClock(),
            stop,
            environ=environ,
            poll_seconds=0.05,
            bounce_read_seconds=0.1,
            on_bounces=read.append,
            on_bounce_error=errors.append,
        )
        await watcher

    asyncio.run(main())


def test_the_worker_reads_the_configured_sources_again_and_again(
    db: Database, tmp_path: Path
) -> None:
    _, rows = sent_run(db, 2)
    box = maildir(tmp_path / "box")
    (box / "new" / "1.a").write_bytes(postfix_dsn(rows[0].message_id, rows[0].address or ""))
    environ = {"MSGRUN_BOUNCE_SOURCES": str(box)}
    second_dropped = False

    def second_read() -> bool:
        # Once the first report is read, another arrives: a later read takes it.
        nonlocal second_dropped
        if stored_reports(db) == 1 and not second_dropped:
            second_dropped = True
            (box / "new" / "2.b").write_bytes(
                postfix_dsn(rows[1].message_id, rows[1].address or "", own_id="<other@mx>")
            )
        return stored_reports(db) == 2

    read: list[ReadSummary] = []
    errors: list[BaseException] = []
    run_worker(db, environ, second_read, read, errors)
    assert errors == []
    assert sum(s.hard for s in read) == 2
    with db.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(RecipientOutcome)).scalar_one() == 2
        )
    assert sorted(p.name.split(":")[0] for p in (box / "cur").iterdir()) == ["1.a", "2.b"]


def test_a_bad_source_is_reported_and_the_worker_carries_on(db: Database, tmp_path: Path) -> None:
    environ = {"MSGRUN_BOUNCE_SOURCES": str(tmp_path / "nowhere")}
    read: list[ReadSummary] = []
    errors: list[BaseException] = []
    # The worker ends because it is told to (once it has reported twice), not by the error.
    run_worker(db, environ, lambda: len(errors) >= 2, read, errors)
    assert "nowhere" in str(errors[0]) and read == []


def test_msgrun_worker_says_on_stderr_what_it_could_not_read(
    sqlite_db: Database, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MSGRUN_BOUNCE_SOURCES": str(tmp_path / "nowhere"),
        "MSGRUN_DB": url_of(sqlite_db),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if line.startswith("bounces:"):
                break
        assert any("bounces:" in line and "nowhere" in line for line in lines), lines
        assert process.poll() is None  # still running
    finally:
        process.terminate()
        _, rest = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "Traceback" not in "".join(lines) + rest
