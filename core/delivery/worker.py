"""``msgrun worker``: deliver runs from the database until told to stop.

A worker looks for runs that need delivering and that no live process holds:
`running` runs (started with ``--detach``, or left by a process that died or
a worker that shut down) and `waiting` runs whose held recipients are due.
It delivers one at a time, under the run's lease. On SIGINT/SIGTERM it lets
the messages in flight finish, leaves the run `running` for the next worker,
releases its lease and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from sqlalchemy import Connection, and_, exists, or_, select

from core.clock import Clock
from core.delivery.deliver import Delivery, LeaseHeld, deliver, process_owner
from core.delivery.states import HELD, RETRYING, RUNNING, STOPPING, WAITING
from core.storage.database import Database
from core.storage.models import MessageRun, Recipient, table_of

POLL_SECONDS = 1.0


def runs_to_deliver(connection: Connection, clock: Clock) -> list[int]:
    """Runs with work due now and no live lease, oldest first."""
    run, recipient = table_of(MessageRun), table_of(Recipient)
    now = clock.now()
    free = or_(run.c.lease_owner.is_(None), run.c.lease_expires_at < now)
    due_held = exists().where(
        recipient.c.run_id == run.c.id, recipient.c.state == HELD, recipient.c.send_after <= now
    )
    due_retry = exists().where(
        recipient.c.run_id == run.c.id,
        recipient.c.state == RETRYING,
        recipient.c.next_attempt_at <= now,
    )
    query = (
        select(run.c.id)
        .where(
            free,
            or_(
                run.c.state.in_([RUNNING, STOPPING]),
                and_(run.c.state == WAITING, or_(due_held, due_retry)),
            ),
        )
        .order_by(run.c.id)
    )
    return list(connection.execute(query).scalars())


async def work(
    database: Database,
    clock: Clock,
    stop: asyncio.Event,
    *,
    environ: Mapping[str, str] | None = None,
    on_delivery: Callable[[Delivery], None] | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> None:
    owner = process_owner()
    while not stop.is_set():

        def find() -> list[int]:
            with database.connect() as connection:
                return runs_to_deliver(connection, clock)

        candidates = await asyncio.to_thread(find)
        for run_id in candidates:
            if stop.is_set():
                return
            try:
                delivery = await deliver(
                    database,
                    run_id,
                    clock,
                    owner=owner,
                    environ=environ,
                    stop=stop,
                    keep_running_on_stop=True,
                )
            except LeaseHeld:
                continue  # another worker took it first
            if on_delivery is not None:
                on_delivery(delivery)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll_seconds)
