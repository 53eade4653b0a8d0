"""A run whose delivering process is gone shows as interrupted (domain.md, "An
interrupted delivery shows"): at once when the process was on this machine, once
its lease lapses when it was elsewhere; never a detached run nobody took, nor a
waiting one. The read model (``core.delivery.holding``) and what makes its marks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update

from core.clock import SystemClock
from core.delivery import processes, registry
from core.delivery.deliver import DeliveryBroken, deliver
from core.delivery.restart import mark_for_workers
from core.delivery.starting import request_stop
from core.storage import Database
from core.storage.models import MessageRun, RunShare, SmtpProfile, Worker, table_of
from core.storage.sql import database_now
from core.views.run_json import run_json
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import load_ok, url_of
from tests.delivery_support import deliver_now, document, fabricate_run_state, new_run
from tests.test_run_commands import sender_processes_of

pytestmark = pytest.mark.timeout(120)
RUN = table_of(MessageRun)
PROFILE = table_of(SmtpProfile)
ELSEWHERE = "mail-7.elsewhere.example"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def shown_at(db: Database, run_id: int, now: datetime | None = None) -> dict[str, Any]:
    return run_json(db, run_id, with_recipients=False, now=now)


def lease(db: Database, run_id: int, owner: str | None, expires: datetime | None) -> None:
    with db.connect() as connection:
        connection.execute(
            update(RUN)
            .where(RUN.c.id == run_id)
            .values(lease_owner=owner, lease_expires_at=expires)
        )


@pytest.fixture
def run_id(db: Database) -> int:
    return new_run(db, document(3, 2525))


@pytest.fixture
def gone_pid() -> int:
    """The pid of a process that has ended (and been waited for)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(30)
    return process.pid


@pytest.fixture
def zombie_pid() -> Iterator[int]:
    """A child killed and not waited for: its pid still answers a signal 0."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    stat = Path(f"/proc/{process.pid}/stat")
    while not stat.read_text().rpartition(") ")[2].startswith("Z"):
        assert time.monotonic() < deadline, "the child did not become a zombie"
        time.sleep(0.01)
    yield process.pid
    process.wait(10)


def test_a_run_created_for_the_workers_that_nobody_took_is_not_interrupted(
    db: Database, run_id: int
) -> None:
    shown = shown_at(db, run_id)
    assert (shown["state"], shown["interrupted"], shown["held_by"]) == ("running", False, [])


def test_a_waiting_run_is_not_interrupted_though_its_process_has_gone(
    db: Database, run_id: int
) -> None:
    with db.connect() as connection:
        fabricate_run_state(connection, run_id, "waiting")
    lease(db, run_id, f"{ELSEWHERE}:77:abcd1234", T0 - timedelta(hours=1))
    assert shown_at(db, run_id, T0)["interrupted"] is False


def test_a_lease_held_elsewhere_shows_interrupted_only_once_it_lapses(
    db: Database, run_id: int
) -> None:
    lease(db, run_id, f"{ELSEWHERE}:4242:abcd1234.99", T0 + timedelta(seconds=12))
    before = shown_at(db, run_id, T0 + timedelta(seconds=11))
    assert before["interrupted"] is False
    assert before["held_by"] == [{"host": ELSEWHERE, "pid": 4242}]
    after = shown_at(db, run_id, T0 + timedelta(seconds=13))
    assert after["interrupted"] is True
    assert after["held_by"] == [{"host": ELSEWHERE, "pid": 4242}]


def test_a_worker_elsewhere_sharing_the_run_is_waited_for_until_its_lease_lapses(
    db: Database, run_id: int
) -> None:
    """Worker leases are measured on the database's clock: the test sets them on it."""
    worker_id = f"worker:{ELSEWHERE}:99:feedbeef.12"
    with db.connect() as connection:
        now = database_now(connection)
        connection.execute(
            insert(table_of(Worker)).values(
                id=worker_id,
                host=ELSEWHERE,
                pid=99,
                started_at=now,
                expires_at=now + timedelta(seconds=60),
            )
        )
        connection.execute(
            insert(table_of(RunShare)).values(run_id=run_id, worker_id=worker_id, profile_id="main")
        )
    live = shown_at(db, run_id)
    assert (live["interrupted"], live["held_by"]) == (False, [{"host": ELSEWHERE, "pid": 99}])
    with db.connect() as connection:
        connection.execute(
            update(table_of(Worker))
            .where(table_of(Worker).c.id == worker_id)
            .values(expires_at=database_now(connection) - timedelta(seconds=1))
        )
    assert shown_at(db, run_id)["interrupted"] is True
    # Reaped by any process: the share goes, and the run still says who left it.
    with db.connect() as connection:
        registry.reap(connection)
    reaped = shown_at(db, run_id)
    assert (reaped["interrupted"], reaped["held_by"]) == (True, [{"host": ELSEWHERE, "pid": 99}])


def test_a_process_of_this_machine_that_is_gone_shows_interrupted_before_its_lease_lapses(
    db: Database, run_id: int, gone_pid: int, zombie_pid: int
) -> None:
    here = socket.gethostname()
    for pid in (gone_pid, zombie_pid):
        lease(db, run_id, f"{here}:{pid}:abcd1234", T0 + timedelta(seconds=15))
        shown = shown_at(db, run_id, T0)
        assert (shown["interrupted"], shown["held_by"]) == (True, [{"host": here, "pid": pid}])


def test_a_pid_reused_by_another_process_is_not_taken_for_the_one_that_held_the_run(
    db: Database, run_id: int
) -> None:
    here, pid = socket.gethostname(), os.getpid()
    started = processes.start_time(pid)
    assert started is not None
    lease(db, run_id, f"{here}:{pid}:abcd1234.{started}", T0 + timedelta(seconds=15))
    assert shown_at(db, run_id, T0)["interrupted"] is False
    lease(db, run_id, f"{here}:{pid}:abcd1234.{int(started) - 1}", T0 + timedelta(seconds=15))
    assert shown_at(db, run_id, T0)["interrupted"] is True


def test_this_process_names_itself_with_its_start_time() -> None:
    named = processes.named(processes.process_id("run"))
    assert named is not None and named.here and named.pid == os.getpid()
    assert named.started == processes.start_time(os.getpid()) and not named.gone()


def test_a_run_queued_again_for_the_workers_is_not_interrupted(db: Database, run_id: int) -> None:
    lease(db, run_id, f"{ELSEWHERE}:4242:abcd1234", T0 - timedelta(hours=1))
    assert shown_at(db, run_id)["interrupted"] is True
    mark_for_workers(db, run_id, SystemClock(), resend_unknown=False)
    assert shown_at(db, run_id)["interrupted"] is False


def test_a_delivery_that_ends_the_run_leaves_no_mark(db: Database) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, document(3, server.port))
        assert deliver_now(db, run_id).state == "completed"
    shown = shown_at(db, run_id)
    assert (shown["interrupted"], shown["held_by"]) == (False, [])


def test_a_sender_process_that_dies_leaves_the_run_interrupted_at_once(db: Database) -> None:
    """A child dying while its parent lives ends the delivery (what it had in flight is
    in doubt); the run, still `running`, says at once that nobody delivers it."""
    total = 400
    with SmtpServer(faults=Faults(data_delay=0.005)) as server:
        run_id = new_run(db, document(total, server.port, max_connections=4))

        async def kill_one_child_midway() -> None:
            deadline = time.monotonic() + 30
            while len(server.messages()) < 20:
                assert time.monotonic() < deadline, "nothing was sent"
                await asyncio.sleep(0.01)
            os.kill(sender_processes_of(os.getpid())[0], signal.SIGKILL)

        async def both() -> None:
            killer = asyncio.create_task(kill_one_child_midway())
            try:
                with pytest.raises(DeliveryBroken, match="sender process"):
                    await deliver(
                        db, run_id, SystemClock(), environ={"MSGRUN_SENDER_PROCESSES": "2"}
                    )
            finally:
                await killer

        asyncio.run(both())
    shown = shown_at(db, run_id)
    assert (shown["state"], shown["interrupted"]) == ("running", True)
    assert shown["held_by"] == [{"host": socket.gethostname(), "pid": os.getpid()}]
    assert "sender process" in shown["error"], "the run says why"
    # Taken up again: the run no longer says so.
    with SmtpServer() as server:
        with db.connect() as connection:
            connection.execute(update(PROFILE).values(port=server.port))
        deliver_now(db, run_id, environ={"MSGRUN_SENDER_PROCESSES": "0"})
    again = shown_at(db, run_id)
    assert (again["state"], again["interrupted"], again["error"]) == (
        "completed_with_failures",
        False,
        None,
    )


def test_stopping_a_run_whose_process_here_is_gone_stops_it_at_once(
    db: Database, run_id: int, gone_pid: int
) -> None:
    """No waiting for the lease of a process that cannot honour the request."""
    now = datetime.now(UTC)
    lease(db, run_id, f"{socket.gethostname()}:{gone_pid}:abcd1234", now + timedelta(seconds=15))
    outcome = request_stop(db, run_id, SystemClock())
    assert outcome.run.state == "stopped"
    assert shown_at(db, run_id)["interrupted"] is False


MSGRUN = str(Path(sys.executable).with_name("msgrun"))


def test_kill_9_of_a_delivering_process_shows_interrupted_at_once(
    db: Database, tmp_path: Path
) -> None:
    """``msgrun run start`` held mid-way by a server that keeps its replies, killed: the
    next ``run show`` says interrupted while its lease still runs. The lease is pushed an
    hour ahead after the kill, so that however slow the machine is, the answer can only
    come from the process being gone, never from the lease lapsing."""
    env = {
        **os.environ,
        "MSGRUN_DB": url_of(db),
        "MSGRUN_LEASE_SECONDS": "15",
        "MSGRUN_SENDER_PROCESSES": "0",
    }

    def msgrun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MSGRUN, *args], env=env, capture_output=True, text=True, timeout=60)

    def show(run_id: int) -> dict[str, Any]:
        result = msgrun("run", "show", str(run_id), "--json")
        assert result.returncode == 0, result.stderr
        shown: dict[str, Any] = json.loads(result.stdout)
        return shown

    gate = threading.Event()  # DATA is not answered until the test says
    with SmtpServer(faults=Faults(data_gate=gate)) as server:
        load_ok(db, document(20, server.port, max_connections=2))
        process = subprocess.Popen(
            [MSGRUN, "run", "start", "inv"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            run_id = int(process.stdout.readline())
            deadline = time.monotonic() + 30
            while (before := show(run_id))["counts"]["sending"] == 0:
                assert time.monotonic() < deadline, "the delivery never reached the server"
                time.sleep(0.05)
            here = socket.gethostname()
            assert before["interrupted"] is False
            assert before["held_by"] == [{"host": here, "pid": process.pid}]
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            with db.connect() as connection:
                connection.execute(
                    update(table_of(MessageRun))
                    .where(table_of(MessageRun).c.id == run_id)
                    .values(lease_expires_at=datetime.now(UTC) + timedelta(hours=1))
                )
            after = show(run_id)
            text = msgrun("run", "show", str(run_id)).stdout
            listed = msgrun("run", "list").stdout
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            gate.set()
    assert (after["state"], after["interrupted"]) == ("running", True)
    assert after["held_by"] == [{"host": here, "pid": process.pid}]
    assert f"run {run_id} · inv · running (interrupted)" in text
    assert "interrupted: no process delivers this run any more" in text
    assert f"next: msgrun run restart {run_id} delivers what was not sent" in text
    assert "being delivered by" not in text
    assert "running (interrupted)" in listed


def test_a_worker_leaving_a_run_never_takes_the_place_of_a_live_lease(
    db: Database, run_id: int
) -> None:
    now = datetime.now(UTC)
    lease(db, run_id, f"{ELSEWHERE}:4242:abcd1234", now + timedelta(seconds=12))
    with db.connect() as connection:
        registry.left_unfinished(connection, run_id, f"worker:{ELSEWHERE}:7:cafe0001", now)
    shown = shown_at(db, run_id, now)
    assert (shown["interrupted"], shown["held_by"]) == (False, [{"host": ELSEWHERE, "pid": 4242}])
    # Once nobody holds it, the worker that left it is named.
    lease(db, run_id, None, None)
    with db.connect() as connection:
        registry.left_unfinished(connection, run_id, f"worker:{ELSEWHERE}:7:cafe0001", now)
    shown = shown_at(db, run_id, now)
    assert (shown["interrupted"], shown["held_by"]) == (True, [{"host": ELSEWHERE, "pid": 7}])


def test_a_worker_that_shuts_down_leaves_its_runs_interrupted_until_one_takes_them_up(
    db: Database,
) -> None:
    """A worker shutting down (SIGTERM) leaves its runs `running` for the next worker:
    until one comes, nobody delivers them, and they say so."""
    with SmtpServer() as server:
        run_id = new_run(db, document(5, server.port))

        async def shut_down_at_once() -> str:
            stop = asyncio.Event()
            stop.set()
            delivery = await deliver(
                db, run_id, SystemClock(), environ={}, stop=stop, keep_running_on_stop=True
            )
            return delivery.state

        assert asyncio.run(shut_down_at_once()) == "running"
        shown = shown_at(db, run_id)
        assert (shown["state"], shown["interrupted"]) == ("running", True)
        deliver_now(db, run_id, resume_only=True)
    assert shown_at(db, run_id)["interrupted"] is False
