"""A worker outlives what goes wrong under it: a failed task, being reaped while alive.

These run ``msgrun worker``'s loop in this process, on SQLite and on the real
PostgreSQL, against a real SMTP server on loopback.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from core.clock import SystemClock
from core.delivery import registry, transitions
from core.delivery.deliver import DeliveryBroken
from core.run_info import get_run
from core.storage import Database
from core.storage.database import retry_transient
from core.storage.models import Worker, table_of
from core.triggers import routines
from core.worker import work
from fixtures.smtp_servers import Faults, SmtpServer
from tests.delivery_support import assert_counts_match_rows, document, new_run, states

pytestmark = pytest.mark.timeout(120)
# Renewed every 1.5 s: a reaped worker notices soon; a busy machine does not get it reaped.
ENVIRON = {"MSGRUN_LEASE_SECONDS": "6"}


def run_worker_until(
    db: Database,
    done: Callable[[], bool],
    *,
    seconds: float = 60,
    during: Callable[[], None] | None = None,
) -> list[tuple[int | None, BaseException]]:
    """Run a worker until ``done()`` (checked often); the errors it reported."""
    errors: list[tuple[int | None, BaseException]] = []

    async def main() -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            try:
                while not await asyncio.to_thread(done):
                    assert loop.time() < deadline, "the worker did not finish in time"
                    if during is not None:
                        await asyncio.to_thread(during)
                    await asyncio.sleep(0.05)
            finally:
                stop.set()

        watcher = asyncio.create_task(watch())
        await work(
            db,
            SystemClock(),
            stop,
            environ=ENVIRON,
            on_error=lambda run_id, error: errors.append((run_id, error)),
            poll_seconds=0.1,
        )
        await watcher

    asyncio.run(main())
    return errors


def settled(db: Database, run_id: int) -> Callable[[], bool]:
    return lambda: get_run(db, run_id).state in ("completed", "completed_with_failures")


def failing(times: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, but the first ``times`` calls fail as when the database goes away."""
    failures = [OperationalError("UPDATE", {}, Exception("server closed")) for _ in range(times)]

    def call(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    return call


def deliver_while_failing(
    db: Database, monkeypatch: pytest.MonkeyPatch, module: Any, name: str, times: int, total: int
) -> tuple[int, list[tuple[int | None, BaseException]], dict[str, int], dict[str, int]]:
    """A worker delivers a run while ``module.name`` fails its first ``times`` calls.

    Returns the run, the errors the worker reported, the run's counts and
    address → messages received.
    """
    with SmtpServer(faults=Faults(data_delay=0.005)) as server:
        run_id = new_run(db, document(total, server.port, max_connections=2))
        monkeypatch.setattr(module, name, failing(times, getattr(module, name)))
        errors = run_worker_until(db, settled(db, run_id))
        received = dict(server.recipients())
    return run_id, errors, assert_counts_match_rows(db, run_id), received


def test_a_failed_marking_as_sending_is_reported_and_the_run_is_taken_up_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, errors, counts, received = deliver_while_failing(
        db, monkeypatch, transitions, "mark_sending", 1, 40
    )
    assert [(r, type(e)) for r, e in errors] == [(run_id, DeliveryBroken)]
    assert "server closed" in str(errors[0][1])
    # Nothing was in flight when marking them `sending` failed: nothing lost, nothing in doubt.
    assert counts["sent"] == 40 and counts["unknown"] == 0
    assert len(received) == 40 and set(received.values()) == {1}


def test_results_that_could_not_be_recorded_are_recorded_later(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, errors, counts, received = deliver_while_failing(
        db, monkeypatch, transitions, "record_results", 1, 40
    )
    assert [(r, type(e)) for r, e in errors] == [(run_id, DeliveryBroken)]
    # Kept and recorded once the database answered again: nothing in doubt.
    assert counts["sent"] == 40 and counts["unknown"] == 0
    assert len(received) == 40 and set(received.values()) == {1}


def test_what_a_failed_delivery_left_sending_is_in_doubt_when_taken_up_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database is away for the delivery's last flush too: the results
    # are lost with it, and the worker, taking the run up again, finds its
    # own recipients still `sending`.
    run_id, errors, counts, received = deliver_while_failing(
        db, monkeypatch, transitions, "record_results", 2, 40
    )
    assert [(r, type(e)) for r, e in errors] == [(run_id, OperationalError)]
    assert counts["sending"] == counts["pending"] == 0
    assert counts["unknown"] > 0, "what may have been sent is in doubt, not sent again"
    assert counts["sent"] + counts["unknown"] == 40
    assert set(received.values()) == {1}, "nobody receives a message twice"
    sent = {a for a, state in states(db, run_id).items() if state == "sent"}
    assert sent <= set(received)


def test_a_round_that_cannot_reach_the_database_is_reported_and_tried_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, errors, counts, received = deliver_while_failing(
        db, monkeypatch, routines, "fire_due", 2, 10
    )
    assert [(r, type(e)) for r, e in errors] == [(None, OperationalError)] * 2
    assert counts["sent"] == 10
    assert len(received) == 10 and set(received.values()) == {1}


def test_a_worker_reaped_while_alive_carries_on_under_a_new_id(db: Database) -> None:
    """Its lease lapsed (a long stall, say) and another process reaped it.

    Whatever it still had `sending` under its old id becomes `unknown` at the
    next reap, and the run settles: no recipient stays `sending` for ever.
    """
    worker = table_of(Worker)
    seen: set[str] = set()
    reaped: list[str] = []

    def reap_the_first_worker_once() -> None:
        with db.connect() as connection:
            ids = set(connection.execute(select(worker.c.id)).scalars())
            seen.update(ids)
            if reaped or not ids:
                return
            # Another process found its lease lapsed and reaped it.
            victim = sorted(ids)[0]
            connection.execute(update(worker).values(expires_at=worker.c.started_at))
            registry.reap(connection)
            reaped.append(victim)

    # The server holds every message until the worker has noticed it was reaped
    # and registered again: the run cannot settle first, however fast the machine.
    gate = threading.Event()

    def reap_then_release() -> None:
        reap_the_first_worker_once()
        if reaped and len(seen) >= 2:
            gate.set()

    with SmtpServer(faults=Faults(data_gate=gate)) as server:
        run_id = new_run(db, document(300, server.port, max_connections=4))
        errors = run_worker_until(db, settled(db, run_id), during=reap_then_release)
        received = server.recipients()
    assert errors == []
    assert reaped and len(seen) >= 2, "the worker registered again under a new id"
    counts = assert_counts_match_rows(db, run_id)
    assert counts["sending"] == counts["pending"] == 0
    assert counts["sent"] + counts["unknown"] == 300
    assert max(received.values()) == 1, "nobody receives a message twice"
    with db.connect() as connection:
        assert list(connection.execute(select(worker.c.id))) == []


class FakeServerError(Exception):
    def __init__(self, sqlstate: str) -> None:
        self.sqlstate = sqlstate


def test_retry_transient_tries_again_only_what_the_server_undid() -> None:
    calls: list[int] = []

    def deadlocked_twice() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise DBAPIError("UPDATE", {}, FakeServerError("40P01"))
        return "done"

    assert retry_transient(deadlocked_twice) == "done" and len(calls) == 3

    def broken() -> str:
        calls.append(1)
        raise DBAPIError("UPDATE", {}, FakeServerError("23505"))

    calls.clear()
    with pytest.raises(DBAPIError):
        retry_transient(broken)
    assert len(calls) == 1, "an error the server did not undo is not tried again"


@pytest.mark.parametrize("times", [1, 2])
def test_a_foreground_run_cut_short_by_the_database_says_how_to_go_on(
    sqlite_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    times: int,
) -> None:
    from tui import cli

    with SmtpServer(faults=Faults(data_delay=0.005)) as server:
        run_id = new_run(sqlite_db, document(20, server.port, max_connections=2))
        monkeypatch.setattr(
            transitions, "record_results", failing(times, transitions.record_results)
        )
        code = cli.main(["run", "restart", str(run_id), "--db", sqlite_db.describe()])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "internal error" not in err
    assert f"run {run_id}: " in err and "server closed" in err
    assert f"msgrun run restart {run_id} --db {sqlite_db.describe()} takes it up again" in err
    # And it does: what was in doubt stays so; the rest is sent, once.
    with SmtpServer(port=server.port) as again:
        assert cli.main(["run", "restart", str(run_id), "--db", sqlite_db.describe()]) in (0, 1)
        counts = assert_counts_match_rows(sqlite_db, run_id)
        assert counts["pending"] == counts["sending"] == 0
        assert counts["sent"] + counts["unknown"] == 20
        assert not set(again.recipients()) & set(server.recipients())
