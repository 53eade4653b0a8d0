"""Sender processes: one run on every core, the delivering process keeping the database.

When they are used (``policy.sender_processes``), that a sender process that dies
ends the delivery with what it had in flight in doubt and nothing lost, and that a
bad MSGRUN_SENDER_PROCESSES is refused before anything is done. That the promises
hold when they send is shown by the delivery tests, which run both ways
(``sending_ways``), and by the kill -9 test of ``test_run_commands``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.clock import SystemClock
from core.delivery.deliver import DeliveryBroken, deliver
from core.delivery.policy import PROCESSES_FROM, sender_processes
from core.storage import Database
from fixtures.smtp_servers import Faults, SmtpServer
from tests.delivery_support import assert_counts_match_rows, deliver_now, document, new_run
from tests.test_run_commands import alive, sender_processes_of

pytestmark = pytest.mark.timeout(120)
MSGRUN = str(Path(sys.executable).with_name("msgrun"))


@pytest.mark.parametrize(
    ("setting", "cores", "connections", "rate", "left_to_send", "processes"),
    [
        (None, 2, 4, None, PROCESSES_FROM, 2),  # a large run on two cores: one each
        (None, 8, 4, None, 100_000, 4),  # never more than the connections
        (None, 2, 4, None, PROCESSES_FROM - 1, 0),  # small runs: not worth starting them
        (None, 1, 4, None, 100_000, 0),  # one core: nothing to win
        (None, 2, 1, None, 100_000, 0),  # one connection
        (None, 2, 4, 50.0, 100_000, 0),  # the profile's rate is what limits
        (None, 2, 4, 5000.0, 100_000, 2),
        (0, 2, 4, None, 100_000, 0),  # MSGRUN_SENDER_PROCESSES=0: none
        (3, 1, 4, None, 10, 3),  # asked for: so many, whatever the run
        (9, 2, 4, None, 10, 4),  # but never more than the connections
    ],
)
def test_when_sender_processes_are_used(
    setting: int | None,
    cores: int,
    connections: int,
    rate: float | None,
    left_to_send: int,
    processes: int,
) -> None:
    assert (
        sender_processes(
            setting,
            cores=cores,
            max_connections=connections,
            rate_per_second=rate,
            left_to_send=left_to_send,
        )
        == processes
    )


@pytest.mark.parametrize(
    ("cores", "here", "processes"),
    [
        (2, 1, 2),  # alone on two cores: one sender process a core
        (2, 2, 0),  # two deliveries on two cores: a core each, each its own sender
        (2, 4, 0),
        (8, 2, 4),  # eight cores shared by two: four each
        (8, 3, 2),
        (16, 1, 4),  # never more than the connections
    ],
)
def test_the_cores_are_shared_by_the_deliveries_on_the_machine(
    cores: int, here: int, processes: int
) -> None:
    assert (
        sender_processes(
            None,
            cores=cores,
            max_connections=4,
            rate_per_second=None,
            left_to_send=100_000,
            deliveries_here=here,
        )
        == processes
    )
    # MSGRUN_SENDER_PROCESSES still decides when it is set.
    assert (
        sender_processes(
            2,
            cores=cores,
            max_connections=4,
            rate_per_second=None,
            left_to_send=1,
            deliveries_here=here,
        )
        == 2
    )


def test_the_deliveries_on_this_machine_are_the_live_ones_taking_part_in_a_run(
    db: Database,
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from core.delivery import registry
    from core.storage.models import Worker, table_of

    with SmtpServer() as server:
        first = new_run(db, document(2, server.port))
        second = new_run(db, document(2, server.port))
    with db.connect() as c:
        for name in ("a", "b", "c", "idle"):
            registry.register(c, f"worker:{name}", 60)
        registry.join(c, first, "worker:a", "main")
        registry.join(c, second, "worker:a", "main")  # one process, two runs: one delivery
        registry.join(c, first, "worker:b", "main")
        registry.join(c, second, "worker:c", "main")
    with db.connect() as c:
        assert registry.deliveries_here(c) == 3  # a, b and c; not the idle one
        lapsed = registry.database_now(c) - timedelta(seconds=1)
        c.execute(
            update(table_of(Worker))
            .where(table_of(Worker).c.id == "worker:c")
            .values(expires_at=lapsed)
        )
        c.execute(
            update(table_of(Worker))
            .where(table_of(Worker).c.id == "worker:b")
            .values(host="another-machine")
        )
    with db.connect() as c:
        assert registry.deliveries_here(c) == 1  # c's lease lapsed, b is elsewhere


def test_a_large_run_is_sent_by_sender_processes_each_recipient_once(db: Database) -> None:
    total = PROCESSES_FROM
    with SmtpServer() as server:
        run_id = new_run(db, document(total, server.port, max_connections=4))
        delivery = deliver_now(db, run_id, environ={})
        received = server.recipients()
    assert delivery.state == "completed" and delivery.sent == total
    assert delivery.sender_processes == min(2, os.cpu_count() or 1) or (os.cpu_count() or 1) < 2
    assert len(received) == total and set(received.values()) == {1}
    assert assert_counts_match_rows(db, run_id)["sent"] == total
    assert sender_processes_of(os.getpid()) == [], "the sender processes ended with it"


def test_a_sender_process_that_dies_ends_the_delivery_and_loses_no_one(db: Database) -> None:
    total = 400
    with SmtpServer(faults=Faults(data_delay=0.005)) as server:
        run_id = new_run(db, document(total, server.port, max_connections=4))
        environ = {"MSGRUN_SENDER_PROCESSES": "2"}

        async def kill_one_child_midway() -> None:
            deadline = time.monotonic() + 30
            while len(server.messages()) < 50:
                assert time.monotonic() < deadline, "nothing was sent"
                await asyncio.sleep(0.01)
            children = sender_processes_of(os.getpid())
            assert len(children) == 2
            os.kill(children[0], signal.SIGKILL)

        async def both() -> BaseException | None:
            killer = asyncio.create_task(kill_one_child_midway())
            try:
                await deliver(db, run_id, SystemClock(), environ=environ)
            except DeliveryBroken as error:
                return error
            finally:
                await killer
            return None

        broken = asyncio.run(both())
        assert broken is not None and "sender process" in str(broken) and "ended" in str(broken)
        counts = assert_counts_match_rows(db, run_id)
        # What the dead process had in flight is in doubt; nothing is left `sending`.
        assert counts["sending"] == 0
        assert counts["sent"] + counts["unknown"] + counts["pending"] == total
        assert all(not alive(pid) for pid in sender_processes_of(os.getpid()))
        # A restart sends the rest, never the unknown ones, nobody twice.
        again = deliver_now(db, run_id, environ=environ)
        received = server.recipients()
    assert again.state in ("completed", "completed_with_failures")
    after = assert_counts_match_rows(db, run_id)
    assert after["pending"] == after["sending"] == 0
    assert after["sent"] + after["unknown"] == total
    assert after["unknown"] == counts["unknown"]
    assert max(received.values()) == 1


@pytest.mark.parametrize("command", [["run", "start", "inv"], ["worker"]])
def test_a_bad_setting_is_refused_before_anything_is_done(
    tmp_path: Path, command: list[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {**os.environ, "MSGRUN_DB": url}
    source = tmp_path / "in.json"
    import json

    source.write_text(json.dumps(document(3, 2525)))
    assert subprocess.run([MSGRUN, "import", str(source)], env=env).returncode == 0
    env["MSGRUN_SENDER_PROCESSES"] = "lots"
    result = subprocess.run([MSGRUN, *command], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "MSGRUN_SENDER_PROCESSES='lots' is not a number" in result.stderr
    assert "Traceback" not in result.stderr
    del env["MSGRUN_SENDER_PROCESSES"]
    listed = subprocess.run([MSGRUN, "run", "list"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0
    assert "inv" not in listed.stdout, "no run was created"
