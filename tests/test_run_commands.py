"""msgrun run … and msgrun worker as processes: exit codes, Ctrl-C, kill -9, workers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.delivery.deliver import STOP_POLL_SECONDS
from core.delivery.policy import most_in_doubt
from core.storage import open_database
from core.storage.models import Recipient, table_of
from fixtures.smtp_servers import Faults, SmtpServer
from tests.delivery_support import assert_counts_match_rows, document

pytestmark = pytest.mark.timeout(180)
MSGRUN = str(Path(sys.executable).with_name("msgrun"))


class Msgrun:
    """``msgrun`` against one SQLite database, as a user runs it."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'runs.db'}"
        self.env = {**os.environ, "MSGRUN_DB": self.url, "MSGRUN_LEASE_SECONDS": "1.5"}
        self.tmp_path = tmp_path

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MSGRUN, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [MSGRUN, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def load(self, doc: dict[str, Any]) -> None:
        path = self.tmp_path / "in.json"
        path.write_text(json.dumps(doc))
        assert self("import", str(path)).returncode == 0

    def show(self, run_id: int) -> dict[str, Any]:
        result = self("run", "show", str(run_id), "--json")
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data


@pytest.fixture
def msgrun(tmp_path: Path) -> Msgrun:
    return Msgrun(tmp_path)


def test_run_start_prints_the_id_first_and_exits_by_outcome(msgrun: Msgrun) -> None:
    with SmtpServer(faults=Faults(rcpt={"p1@example.org": ["550 5.1.1 no such user"]})) as server:
        msgrun.load(document(3, server.port))
        result = msgrun("run", "start", "inv")
        assert result.returncode == 1  # completed_with_failures
        assert result.stdout.splitlines()[0] == "1"
        assert "run 1 completed_with_failures: 2 sent, 1 failed" in result.stderr
        assert "Traceback" not in result.stderr
        doc = document(2, server.port)
        doc["customers"] = doc["customers"][:2]
        msgrun.load(doc)
        ok = msgrun("run", "start", "inv")
        assert (ok.returncode, ok.stdout.splitlines()[0]) == (0, "2")
    shown = msgrun.show(1)
    assert shown["id"] == "1" and shown["state"] == "completed_with_failures"
    assert list(shown["counts"]) == [
        "pending",
        "held",
        "sending",
        "sent",
        "retrying",
        "failed",
        "unknown",
        "excluded",
    ]
    assert {r["state"] for r in shown["recipients"]} == {"sent", "failed"}
    listing = msgrun("run", "list")
    assert listing.returncode == 0 and "completed_with_failures" in listing.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "start", "nope"], "unknown definition 'nope'"),
        (["run", "show", "99"], "unknown run 99"),
        (["run", "stop", "abc"], "unknown run 'abc'"),
        (["run", "restart", "7"], "unknown run 7"),
        (["run", "start", "inv", "--at", "soon"], "--at: 'soon' is not an ISO 8601"),
        (["run", "list", "--limit", "0"], "--limit: '0': must be 1 or more"),
        (["run", "list", "--limit", "many"], "--limit: 'many' is not a whole number"),
    ],
)
def test_bad_usage_exits_2(msgrun: Msgrun, args: list[str], message: str) -> None:
    msgrun.load(document(1, 2525))
    result = msgrun(*args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_stop_restart_and_show_from_other_processes(msgrun: Msgrun) -> None:
    # The server holds every DATA until the delivering process has had time to see the
    # stop: the run cannot finish before it is stopped, however slow the other commands.
    gate, held = threading.Event(), threading.Event()
    with SmtpServer(faults=Faults(data_gate=gate, data_held=held)) as server:
        msgrun.load(document(300, server.port))
        process = msgrun.start("run", "start", "inv")
        assert process.stdout is not None
        run_id = int(process.stdout.readline())
        assert held.wait(60)
        # A restart while the process holds the lease is refused.
        busy = msgrun("run", "restart", str(run_id))
        assert busy.returncode == 1 and "is being delivered by" in busy.stderr
        stop = msgrun("run", "stop", str(run_id))
        assert stop.returncode == 0 and "stop recorded" in stop.stdout
        time.sleep(3 * STOP_POLL_SECONDS)  # the delivery looks for a stop this often
        gate.set()
        assert process.wait(30) == 1
        stopped = msgrun.show(run_id)
        assert stopped["state"] == "stopped"
        assert stopped["counts"]["sent"] == len(server.messages())
        assert stopped["counts"]["pending"] > 0 and stopped["counts"]["sending"] == 0
        again = msgrun("run", "restart", str(run_id))
        assert again.returncode == 0 and again.stdout.splitlines()[0] == str(run_id)
        assert msgrun.show(run_id)["state"] == "completed"
        done = msgrun("run", "restart", str(run_id))
        assert done.returncode == 0 and "nothing to restart" in done.stderr
        ended = msgrun("run", "stop", str(run_id))
        assert ended.returncode == 0 and "already ended" in ended.stdout
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(300)}


def test_ctrl_c_stops_gracefully(msgrun: Msgrun) -> None:
    with SmtpServer(faults=Faults(data_delay=0.03)) as server:
        msgrun.load(document(60, server.port))
        process = msgrun.start("run", "start", "inv")
        assert process.stdout is not None
        run_id = int(process.stdout.readline())
        while len(server.messages()) < 5:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 1
        shown = msgrun.show(run_id)
    assert shown["state"] == "stopped"
    assert shown["counts"]["sent"] == len(server.messages())
    assert shown["counts"]["sending"] == shown["counts"]["unknown"] == 0
    # The lease was released at once: a restart may follow immediately.
    assert msgrun("run", "restart", str(run_id), "--detach").returncode == 0


def test_detached_runs_are_delivered_by_a_worker(msgrun: Msgrun) -> None:
    with SmtpServer() as server:
        msgrun.load(document(25, server.port))
        created = msgrun("run", "start", "inv", "--detach")
        assert created.returncode == 0 and created.stdout.strip() == "1"
        assert msgrun.show(1)["state"] == "running" and not server.messages()
        worker = msgrun.start("worker")
        deadline = time.monotonic() + 30
        while msgrun.show(1)["state"] != "completed":
            assert time.monotonic() < deadline, "the worker did not deliver the run"
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(25)}


def alive(pid: int) -> bool:
    """Process ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def sender_processes_of(parent: int) -> list[int]:
    """The live sender processes (core.delivery.sender_processes) of process ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if (
            b"child_main" in command
            and fields.get("PPid", "").strip() == str(parent)
            and not fields.get("State", "").startswith("Z")
        ):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("total", "data_delay", "processes"),
    [(300, 0.004, "0"), (3000, 0.0, "2")],
    ids=["slow-server-here", "at-speed-sender-processes"],
)
def test_kill_9_at_random_instants_loses_nothing_and_sends_nothing_twice(
    msgrun: Msgrun, total: int, data_delay: float, processes: str
) -> None:
    """Ten kill -9s of the delivering process, each followed by a restart: against a slow
    server from the delivering process, and at full speed from sender processes."""
    rng = random.Random(20261123)
    connections = 4
    msgrun.env["MSGRUN_SENDER_PROCESSES"] = processes
    with SmtpServer(faults=Faults(data_delay=data_delay)) as server:
        msgrun.load(document(total, server.port, max_connections=connections))
        process = msgrun.start("run", "start", "inv")
        assert process.stdout is not None
        run_id = int(process.stdout.readline())
        database = open_database(msgrun.url)
        recipient = table_of(Recipient)
        doubts: list[int] = []
        seen: list[int] = []  # sender processes at each kill
        for _ in range(10):
            # Kill once it is sending (a restart takes a moment to start its senders).
            started = len(server.messages())
            deadline = time.monotonic() + 30
            while len(server.messages()) == started and process.poll() is None:
                assert time.monotonic() < deadline, "the delivery did not send"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, 0.7))
            if process.poll() is not None:
                break  # it finished before this kill
            children = sender_processes_of(process.pid)
            seen.append(len(children))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            killed_at = time.time()
            # Its sender processes die with it (PR_SET_PDEATHSIG): none sends on.
            deadline = time.monotonic() + 5
            while any(alive(pid) for pid in children):
                assert time.monotonic() < deadline, "a sender process outlived its parent"
                time.sleep(0.02)
            with database.connect() as connection:
                in_doubt = connection.execute(
                    select(func.count()).where(
                        recipient.c.run_id == run_id, recipient.c.state == "sending"
                    )
                ).scalar_one()
            recent = sum(1 for m in server.messages() if m.at >= killed_at - 1.0)
            # The promise: at most what was sent in the last second, plus twice
            # max_connections, plus the group marked ahead (a tenth of a second at
            # the rate: policy.most_in_doubt), is left in doubt.
            assert in_doubt <= recent + most_in_doubt(recent, connections)
            doubts.append(in_doubt)
            time.sleep(1.6)  # the lease lapses
            process = msgrun.start("run", "restart", str(run_id))
            assert process.stdout is not None
            assert process.stdout.readline().strip() == str(run_id)
        assert process.wait(120) in (0, 1)
        counts = assert_counts_match_rows(database, run_id)
        received = server.recipients()
    assert max(received.values()) == 1, "no address receives a message twice"
    assert counts["pending"] == counts["sending"] == counts["retrying"] == 0
    assert counts["sent"] + counts["unknown"] == total, "no recipient is lost"
    shown = {r["address"]: r["state"] for r in msgrun.show(run_id)["recipients"]}
    for address, state in shown.items():
        if state == "sent":
            assert received[address] == 1
    # Exactly what each kill left in doubt became unknown; nothing else did.
    assert counts["unknown"] == sum(doubts)
    # Each kill found the sender processes asked for (none in their last moment, when
    # the delivery has ended them and is leaving).
    assert int(processes) in seen and max(seen) == int(processes), seen


def test_restart_after_kill_9_on_this_machine_starts_at_once(msgrun: Msgrun) -> None:
    """The killed process's lease would hold for 15 s; a process of this machine that is
    gone is not waited for."""
    msgrun.env["MSGRUN_LEASE_SECONDS"] = "15"
    total = 20
    with SmtpServer(faults=Faults(data_delay=0.2)) as server:
        msgrun.load(document(total, server.port, max_connections=2))
        process = msgrun.start("run", "start", "inv")
        assert process.stdout is not None
        run_id = int(process.stdout.readline())
        deadline = time.monotonic() + 30
        while len(server.messages()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        restarted = msgrun("run", "restart", str(run_id))
        assert "must wait" not in restarted.stderr
        assert restarted.returncode in (0, 1), restarted.stderr
        assert restarted.stdout.splitlines()[0] == str(run_id)
        shown = msgrun.show(run_id)
        received = server.recipients()
    assert shown["state"] in ("completed", "completed_with_failures")
    assert shown["counts"]["sent"] + shown["counts"]["unknown"] == total
    assert shown["counts"]["sending"] == shown["counts"]["pending"] == 0
    assert max(received.values()) == 1


def test_run_start_at_a_past_instant_is_refused_and_creates_nothing(msgrun: Msgrun) -> None:
    msgrun.load(document(2, 2525))
    for extra in ([], ["--detach"]):
        result = msgrun("run", "start", "inv", "--at", "2026-11-23T10:00:00+11:00", *extra)
        assert result.returncode == 2
        assert "is in the past" in result.stderr
        assert "msgrun plan inv --at 2026-11-23T10:00:00+11:00" in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert "no runs yet" in msgrun("run", "list").stdout


def test_run_start_at_a_future_instant_holds_every_recipient_until_then(
    msgrun: Msgrun,
) -> None:
    at = "2099-01-02T03:04:05+00:00"
    with SmtpServer() as server:
        msgrun.load(document(3, server.port))
        result = msgrun("run", "start", "inv", "--at", at)
        assert result.returncode == 0, result.stderr
        assert "run 1 waiting: 3 held" in result.stderr
        assert f"the next is due at {at}" in result.stderr
        detached = msgrun("run", "start", "inv", "--at", at, "--detach")
        assert detached.returncode == 0
    assert server.messages() == []
    for run_id in (1, 2):
        shown = msgrun.show(run_id)
        assert {r["state"] for r in shown["recipients"]} == {"held"}
        assert {r["send_after"] for r in shown["recipients"]} == {at}


def test_a_run_with_nothing_to_send_completes_as_it_is_made_without_a_connection(
    msgrun: Msgrun,
) -> None:
    """Every candidate excluded: `completed` at once, exit 0, even with the profile's
    password missing (no connection is opened), and a detached one is not left running."""
    doc = document(2, 1)  # port 1: nothing listens there
    doc["smtp_profiles"][0].update(username="u", password_env="MSGRUN_TEST_NO_SUCH_PASSWORD")
    for customer in doc["customers"]:
        customer["contacts"][0]["allow_email"] = False
    msgrun.load(doc)
    result = msgrun("run", "start", "inv")
    assert result.returncode == 0, result.stderr
    assert "run 1 completed: 2 excluded; nothing to send" in result.stderr
    detached = msgrun("run", "start", "inv", "--detach")
    assert detached.returncode == 0 and "nothing to send" in detached.stderr
    assert [msgrun.show(n)["state"] for n in (1, 2)] == ["completed", "completed"]
