"""Many ``msgrun worker`` processes on the real PostgreSQL share runs, exactly once.

Every test here runs worker processes against a fresh PostgreSQL database
(CI requires the server; see conftest) and real SMTP servers on loopback.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.delivery.policy import most_in_doubt
from core.run_info import get_run
from core.storage import Database, open_database
from fixtures.smtp_servers import Faults, SmtpServer
from tests.delivery_support import assert_counts_match_rows, document

pytestmark = [pytest.mark.timeout(300), pytest.mark.postgresql]
MSGRUN = str(Path(sys.executable).with_name("msgrun"))
# Workers' leases: the product's default, so that a worker slowed down by a busy
# machine is never taken for dead; tests that kill one use a short lease, so
# that its death is noticed soon.
LEASE = "12"
SHORT_LEASE = "4"


class Cluster:
    """``msgrun`` commands and worker processes against one PostgreSQL database."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.env = {**os.environ, "MSGRUN_DB": url, "MSGRUN_LEASE_SECONDS": LEASE}
        self.workers: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MSGRUN, *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def load(self, doc: dict[str, Any]) -> None:
        path = self.tmp_path / "in.json"
        path.write_text(json.dumps(doc))
        result = self("import", str(path))
        assert result.returncode == 0, result.stderr

    def start_run(self, definition: str = "inv") -> int:
        result = self("run", "start", definition, "--detach")
        assert result.returncode == 0, result.stderr
        return int(result.stdout.split()[0])

    def show(self, run_id: int) -> dict[str, Any]:
        result = self("run", "show", str(run_id), "--json")
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def spawn(self, n: int) -> None:
        for _ in range(n):
            self.workers.append(
                subprocess.Popen(
                    [MSGRUN, "worker"],
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )

    def wait_for(self, check: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}\n{self.diagnosis()}")
            time.sleep(0.1)

    def diagnosis(self) -> str:
        """What the runs and the workers say, for a failure's message."""
        listed = self("run", "list")
        workers = list(self.workers)
        said = self.stop_workers()
        return "\n".join(
            [listed.stdout, listed.stderr]
            + [
                f"-- worker {n} (exit {worker.returncode}):\n{text}"
                for n, (worker, text) in enumerate(zip(workers, said, strict=True))
            ]
        )

    def stop_workers(self) -> list[str]:
        """SIGTERM every live worker; their stderr (each says what it delivered)."""
        said = []
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(5)
            assert worker.stderr is not None
            said.append(worker.stderr.read())
        self.workers = []
        return said


@pytest.fixture
def cluster(postgresql_db: Database, pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(pg_url, tmp_path)
    try:
        yield group
    finally:
        for worker in group.workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(5)


def sent_by(said: str) -> int:
    """Messages a worker says it sent, over every delivery it reported."""
    return sum(int(n) for n in re.findall(r"run \d+: \w+, (\d+) sent", said))


def test_four_workers_deliver_5000_recipients_exactly_once(
    cluster: Cluster, postgresql_db: Database
) -> None:
    total = 5000
    with SmtpServer() as server:
        cluster.load(document(total, server.port, max_connections=8))
        run_id = cluster.start_run()
        cluster.spawn(4)
        cluster.wait_for(
            lambda: cluster.show(run_id)["state"] == "completed", 180, "the run did not complete"
        )
        said = cluster.stop_workers()
        received = server.recipients()
        assert server.most_connections <= 8
    assert len(received) == total and set(received.values()) == {1}
    counts = assert_counts_match_rows(postgresql_db, run_id)
    assert counts["sent"] == total
    shares = [sent_by(text) for text in said]
    assert sum(shares) == total, said
    assert sum(1 for n in shares if n > 0) >= 2, f"the run was not shared: {shares}"


def test_kill_9_of_one_worker_mid_run_loses_nothing_and_sends_nothing_twice(
    cluster: Cluster, postgresql_db: Database
) -> None:
    total, connections = 2000, 8
    cluster.env["MSGRUN_LEASE_SECONDS"] = SHORT_LEASE
    with SmtpServer(faults=Faults(data_delay=0.003)) as server:
        cluster.load(document(total, server.port, max_connections=connections))
        run_id = cluster.start_run()
        cluster.spawn(4)
        cluster.wait_for(lambda: len(server.messages()) >= 300, 60, "nothing was sent")
        victim = cluster.workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = time.time()
        cluster.wait_for(
            lambda: cluster.show(run_id)["state"] in ("completed", "completed_with_failures"),
            120,
            "the other workers did not finish the run",
        )
        cluster.stop_workers()
        received = server.recipients()
        recent = sum(1 for m in server.messages() if killed_at - 1.0 <= m.at <= killed_at)
    counts = assert_counts_match_rows(postgresql_db, run_id)
    assert max(received.values()) == 1, "no address receives a message twice"
    assert counts["pending"] == counts["sending"] == counts["retrying"] == 0
    assert counts["sent"] + counts["unknown"] == total, "no recipient is lost"
    # In doubt: at most what was sent in its last second (results are written a few
    # times a second) plus twice max_connections plus the group marked ahead
    # (domain.md; policy.most_in_doubt).
    assert counts["unknown"] <= recent + most_in_doubt(recent, connections)
    shown = {r["address"]: r["state"] for r in cluster.show(run_id)["recipients"]}
    assert all(received.get(a) == 1 for a, s in shown.items() if s == "sent")
    assert all(a not in received for a, s in shown.items() if s == "pending")


def test_stop_and_restart_are_honoured_by_every_worker_within_two_seconds(
    cluster: Cluster, postgresql_db: Database
) -> None:
    total = 600
    with SmtpServer() as server:
        # 100 messages a second in all: the run lasts long enough to stop it.
        cluster.load(document(total, server.port, max_connections=4, rate_per_second=100))
        run_id = cluster.start_run()
        cluster.spawn(3)
        cluster.wait_for(lambda: len(server.messages()) >= 50, 60, "nothing was sent")
        # Timed from when each command has recorded what it asks (a command
        # takes most of a second to start), read straight from the database.
        assert cluster("run", "stop", str(run_id)).returncode == 0
        asked = time.monotonic()
        cluster.wait_for(
            lambda: get_run(postgresql_db, run_id).state == "stopped", 10, "the run did not stop"
        )
        assert time.monotonic() - asked <= 2.0
        at_stop = len(server.messages())
        time.sleep(1.5)
        assert len(server.messages()) == at_stop, "a worker went on sending after the stop"
        assert at_stop < total
        assert cluster("run", "restart", str(run_id), "--detach").returncode == 0
        restarted = time.monotonic()
        cluster.wait_for(lambda: len(server.messages()) > at_stop, 10, "no worker resumed")
        assert time.monotonic() - restarted <= 2.0
        cluster.wait_for(
            lambda: cluster.show(run_id)["state"] == "completed", 60, "the run did not complete"
        )
        cluster.stop_workers()
        received = server.recipients()
    assert len(received) == total and set(received.values()) == {1}
    assert assert_counts_match_rows(postgresql_db, run_id)["sent"] == total


def two_profile_document(port_a: int, port_b: int, count: int) -> dict[str, Any]:
    doc = document(count, port_a, max_connections=2, rate_per_second=40)
    second = copy.deepcopy(doc["smtp_profiles"][0])
    second.update(id="bulk", port=port_b, max_connections=3, rate_per_second=60)
    doc["smtp_profiles"].append(second)
    other = copy.deepcopy(doc["definitions"][0])
    other.update(id="inv-bulk", name="Invoice email (bulk server)", smtp_profile="bulk")
    doc["definitions"].append(other)
    return doc


def test_two_runs_on_two_profiles_share_the_workers_within_each_profiles_limits(
    cluster: Cluster, postgresql_db: Database
) -> None:
    count = 200
    with SmtpServer() as first, SmtpServer() as second:
        cluster.load(two_profile_document(first.port, second.port, count))
        run_a = cluster.start_run("inv")
        run_b = cluster.start_run("inv-bulk")
        cluster.spawn(4)
        cluster.wait_for(
            lambda: all(cluster.show(r)["state"] == "completed" for r in (run_a, run_b)),
            120,
            "the runs did not complete",
        )
        cluster.stop_workers()
        for server, connections, rate in ((first, 2, 40), (second, 3, 60)):
            assert server.most_connections <= connections
            times = sorted(m.at for m in server.messages())
            assert len(times) == count and set(server.recipients().values()) == {1}
            # Over the whole run, the pace stays within the profile's rate (a
            # little slack for the first message of each connection).
            elapsed = times[-1] - times[0]
            assert (count - 1) / elapsed <= rate * 1.15, (count, elapsed, rate)
            # Over any second, too.
            for i, start in enumerate(times):
                within = sum(1 for t in times[i:] if t < start + 1.0)
                assert within <= rate * 1.2 + 2
        starts = [min(m.at for m in s.messages()) for s in (first, second)]
    # Both runs were delivered at once, not one after the other.
    assert abs(starts[0] - starts[1]) < 2.0
    for run_id in (run_a, run_b):
        assert assert_counts_match_rows(postgresql_db, run_id)["sent"] == count


def test_a_second_worker_on_sqlite_is_refused_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    open_database(url).dispose()
    # A long lease: the restart below must not be waiting for it to lapse.
    env = {**os.environ, "MSGRUN_DB": url, "MSGRUN_LEASE_SECONDS": "15"}
    first = subprocess.Popen(
        [MSGRUN, "worker"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        assert first.stderr is not None
        assert "delivering runs" in first.stderr.readline()
        time.sleep(0.5)
        second = subprocess.run(
            [MSGRUN, "worker"], env=env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2
        assert "another msgrun worker already delivers from this SQLite database" in second.stderr
        assert "PostgreSQL" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(15)
    # The first died without leaving (kill -9): a new worker on this machine sees its
    # process is gone and starts at once, without waiting for its lease to lapse.
    again = subprocess.Popen(
        [MSGRUN, "worker"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert again.stderr is not None
    assert "delivering runs" in again.stderr.readline()
    time.sleep(1.5)
    assert again.poll() is None, again.stderr.read()
    again.send_signal(signal.SIGTERM)
    assert again.wait(15) == 0


def test_held_recipients_are_released_by_whichever_worker_is_alive(
    cluster: Cluster, postgresql_db: Database
) -> None:
    from datetime import UTC, datetime, timedelta

    from core.delivery import transitions

    total = 40
    cluster.env["MSGRUN_LEASE_SECONDS"] = SHORT_LEASE
    with SmtpServer() as server:
        cluster.load(document(total, server.port))
        run_id = cluster.start_run()
        due = datetime.now(UTC) + timedelta(seconds=3)
        with postgresql_db.connect() as connection:  # quiet hours until `due`
            transitions.move(connection, run_id, None, "pending", "held", due, send_after=due)
            assert transitions.run_transition(connection, run_id, "wait")
        cluster.spawn(2)
        time.sleep(1.0)
        cluster.workers[0].send_signal(signal.SIGKILL)  # one of them dies meanwhile
        cluster.wait_for(
            lambda: cluster.show(run_id)["state"] == "completed", 30, "the holds were not released"
        )
        cluster.stop_workers()
        first = min(m.at for m in server.messages())
        received = server.recipients()
    assert first >= due.timestamp() - 0.05
    assert len(received) == total and set(received.values()) == {1}
