"""A console on a database with runs in the states an operator meets, deterministic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import update

from core.clock import FixedClock, parse_instant
from core.delivery import queries, transitions
from core.delivery.deliver import deliver
from core.delivery.starting import create_run, request_stop
from core.storage import Database, open_database
from core.storage.models import Document, table_of
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import BLUE_LAGOON, STORY_AT, load_ok, sample
from tui.console.app import MsgrunConsole

NOW = parse_instant("2026-11-23T10:30:00+11:00")


def sample_database(folder: Path) -> Database:
    """The sample organisation with three runs: failures, stopped with pending, unknown."""
    database = open_database(f"sqlite:///{folder / 'console.db'}")
    clock = FixedClock(NOW)
    faults = Faults(rcpt={"quinn@taylorfitness.example.com": ["550 5.1.1 no such mailbox"]})
    with SmtpServer(faults=faults) as server:
        data = sample(BLUE_LAGOON)
        data["smtp_profiles"][0].update(
            host="127.0.0.1",
            port=server.port,
            security="none",
            username=None,
            password_env=None,
        )
        load_ok(database, data)
        at = parse_instant(STORY_AT)
        # 1: delivered, one mailbox does not exist, one customer held for quiet hours.
        first = create_run(
            database, "invoice-email", at, clock, started_by="ops@console", token="c0ffee01"
        )
        asyncio.run(deliver(database, first, clock, environ={}))
        # 2: stopped before anything was sent; its draft job sheet was numbered since.
        second = create_run(
            database, "job-sheet", at, clock, started_by="ops@console", token="c0ffee02"
        )
        request_stop(database, second, clock, by="ops@console")
        with database.connect() as connection:
            connection.execute(
                update(table_of(Document))
                .where(table_of(Document).c.id == "JS-502")
                .values(number="JS-502")
            )
        # 3: its process died while two messages were being sent.
        third = create_run(
            database, "service-reminder", at, clock, started_by="ops@console", token="c0ffee03"
        )
        with database.connect() as connection:
            due = queries.load_due(connection, third, NOW, 2)
            transitions.mark_sending(connection, third, due, NOW)
        asyncio.run(deliver(database, third, clock, environ={}))
        # 4: running right now: one sent, one being sent, the rest pending.
        fourth = create_run(
            database, "job-sheet", at, clock, started_by="ops@console", token="c0ffee04"
        )
        with database.connect() as connection:
            due = queries.load_due(connection, fourth, NOW, 2)
            transitions.mark_sending(connection, fourth, due, NOW)
            transitions.record_results(
                connection,
                fourth,
                "job-sheet",
                [
                    transitions.Result(
                        due[0].id,
                        "sent",
                        smtp_code=250,
                        smtp_reply="2.0.0 Ok: queued as M000042",
                        sent_at=NOW,
                        customer_id=due[0].customer_id,
                        address=due[0].address,
                        document_id=due[0].document_id,
                    )
                ],
                NOW,
            )
    return database


def console(database: Database, **options: Any) -> MsgrunConsole:
    options.setdefault("poll_seconds", None)
    return MsgrunConsole(database, clock=FixedClock(NOW), still=True, **options)
