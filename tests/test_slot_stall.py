"""A delivery whose senders give their slots back never strands what it marked `sending`.

The stall of issue 12 (a routine's runs under three workers sent 2 or 3 of 5
and stayed `running`): a sender gives its connection slot back when other runs
want the profile (its turn is over) or when its delivery holds more than its
share. It then waited for the feeder to say there was work — but the feeder
said so only while it had recipients still to mark, not while messages it had
marked `sending` waited in the queue. Once the feeder had marked the last of
them, a sender that gave its slot back never took one again, and those
messages stayed `sending` in a process that held no connection.

Provoked here on purpose: another run wants the profile (a live worker shares
it), and each turn is made to end after every message, so the senders give
their slot back after each one, with the last messages still queued.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import insert

from core.clock import SystemClock, parse_instant
from core.delivery import senders as senders_module
from core.delivery.deliver import deliver
from core.delivery.starting import create_run
from core.storage import Database
from core.storage.models import RunShare, Worker, table_of
from core.storage.sql import database_now
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import load_ok
from tests.delivery_support import AT, assert_counts_match_rows, document

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("sending_ways")]
# Generous: without the fix the delivery never ends; with it, it takes about a second.
DEADLINE_SECONDS = 60.0


def another_run_wants_the_profile(db: Database) -> None:
    """A live worker (of another machine) takes part in a second run of the same profile."""
    other = create_run(db, "inv", parse_instant(AT), SystemClock())
    with db.connect() as connection:
        now = database_now(connection)
        connection.execute(
            insert(table_of(Worker)).values(
                id="worker:elsewhere:1:feedcafe",
                host="elsewhere",
                pid=1,
                started_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
        connection.execute(
            insert(table_of(RunShare)).values(
                run_id=other, worker_id="worker:elsewhere:1:feedcafe", profile_id="main"
            )
        )


@pytest.mark.parametrize("connections", [1, 2])
def test_senders_that_give_their_slot_back_take_one_again_for_queued_messages(
    db: Database, monkeypatch: pytest.MonkeyPatch, connections: int
) -> None:
    monkeypatch.setattr(senders_module, "SLOT_TURN_SECONDS", 0.0)
    with SmtpServer(faults=Faults(data_delay=0.2)) as server:
        load_ok(db, document(3 * connections, server.port, max_connections=connections))
        run_id = create_run(db, "inv", parse_instant(AT), SystemClock())
        another_run_wants_the_profile(db)

        async def bounded() -> str:
            delivery = await asyncio.wait_for(
                deliver(db, run_id, SystemClock(), environ={}), DEADLINE_SECONDS
            )
            return delivery.state

        try:
            state = asyncio.run(bounded())
        except TimeoutError:
            counts = assert_counts_match_rows(db, run_id)
            pytest.fail(f"the delivery stalled with {counts['sending']} recipients `sending`")
    assert state == "completed"
    assert assert_counts_match_rows(db, run_id)["sent"] == 3 * connections
    assert len(server.recipients()) == 3 * connections
