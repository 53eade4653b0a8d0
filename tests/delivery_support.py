"""Helpers for delivery tests: data pointing at a test SMTP server, and checks."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select

from core.clock import Clock, SystemClock, parse_instant
from core.delivery.deliver import Delivery, deliver
from core.delivery.starting import create_run
from core.run_info import get_run
from core.smtp_profiles import ProfileSettings
from core.storage import Database
from core.storage.models import Recipient, RunCount, table_of
from tests.conftest import MINIMAL, load_ok

AT = "2026-11-23T10:00:00+00:00"


def document(count: int, port: int, **profile: Any) -> dict[str, Any]:
    """``count`` customers, each with one billing address and one approved invoice.

    The profile retries quickly (0.05 s apart) unless ``profile`` says otherwise.
    """
    doc = copy.deepcopy(MINIMAL)
    doc["smtp_profiles"][0].update(port=port, retry_after_seconds=[0.05])
    doc["smtp_profiles"][0].update(**profile)
    doc["customers"] = [
        {
            "id": f"C{i:05d}",
            "name": f"Customer {i}",
            "contacts": [
                {
                    "id": f"C{i:05d}-1",
                    "name": f"Person {i}",
                    "allow_email": True,
                    "addresses": [{"address": f"p{i}@example.org", "key": "billing"}],
                }
            ],
        }
        for i in range(count)
    ]
    doc["documents"] = [
        {
            "id": f"D{i:05d}",
            "kind": "invoice",
            "number": f"2026-{i:05d}",
            "status": "approved",
            "customer": f"C{i:05d}",
        }
        for i in range(count)
    ]
    return doc


def new_run(db: Database, doc: dict[str, Any], at: str = AT, clock: Clock | None = None) -> int:
    load_ok(db, doc)
    return create_run(db, "inv", parse_instant(at), clock or SystemClock())


def deliver_now(db: Database, run_id: int, clock: Clock | None = None, **options: Any) -> Delivery:
    options.setdefault("environ", {})
    return asyncio.run(deliver(db, run_id, clock or SystemClock(), **options))


def states(db: Database, run_id: int) -> dict[str, str]:
    """address → state of every recipient of the run."""
    table = table_of(Recipient)
    with db.connect() as connection:
        rows = connection.execute(
            select(table.c.address, table.c.state).where(table.c.run_id == run_id)
        ).all()
    return {row.address: row.state for row in rows}


def assert_counts_match_rows(db: Database, run_id: int) -> dict[str, int]:
    """The counters kept with every transition equal a count of the rows."""
    recipient, count = table_of(Recipient), table_of(RunCount)
    with db.connect() as connection:
        rows = dict(
            connection.execute(
                select(recipient.c.state, func.count())
                .where(recipient.c.run_id == run_id)
                .group_by(recipient.c.state)
            ).all()
        )
        kept = dict(
            connection.execute(
                select(count.c.state, func.sum(count.c.n))
                .where(count.c.run_id == run_id)
                .group_by(count.c.state)
            ).all()
        )
    assert {s: n for s, n in kept.items() if n} == rows
    return get_run(db, run_id).counts


def fabricate_recipient_state(
    connection: Any, run_id: int, ids: list[int], source: str, target: str
) -> None:
    """Put recipients in a state no transition leads to from where they are (as a
    crash or an older version might leave them), counters with them. Tests only:
    the engine moves states through core.delivery.transitions alone."""
    from sqlalchemy import update

    from core.delivery.transitions import bump

    table = table_of(Recipient)
    moved = connection.execute(
        update(table).where(table.c.id.in_(ids), table.c.state == source).values(state=target)
    ).rowcount
    deltas = {source: -moved}
    deltas[target] = deltas.get(target, 0) + moved
    bump(connection, run_id, deltas)


def fabricate_run_state(connection: Any, run_id: int, state: str, **values: Any) -> None:
    """Put a run in ``state`` whatever it was (tests only, as above)."""
    from sqlalchemy import update

    from core.storage.models import MessageRun

    table = table_of(MessageRun)
    connection.execute(update(table).where(table.c.id == run_id).values(state=state, **values))


def profile_settings(**changes: Any) -> ProfileSettings:
    """An SMTP profile's settings as a delivery or a test reads them: a plain profile on
    127.0.0.1:25 with no login, changed by ``changes``."""
    base = ProfileSettings(
        id="main",
        host="127.0.0.1",
        port=25,
        security="none",
        username=None,
        password_env=None,
        from_address="billing@pools.example.com",
        from_name="Pools",
        max_connections=1,
        rate_per_second=None,
        tls_verify=True,
        ca_file=None,
        timeout_seconds=5,
    )
    return replace(base, **changes)
