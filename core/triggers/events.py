"""Events: ``msgrun event fire NAME`` starts a run of every enabled definition listening.

A definition listens with ``trigger: {"type": "event", "event": NAME}``. The
runs are planned for the named customers only (all when none is named), and
made for the workers to deliver. With ``per_trigger`` dedup a customer the
definition has already targeted is excluded (``already_targeted``), so an
event fired twice for the same customer reaches them once. Every fire is
recorded, with the run it started or why it started none.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from core.clock import Clock
from core.delivery.starting import TemplateFailsForEveryone, create_run_on
from core.planner.load import load_definitions
from core.run_info import read_counts
from core.storage.database import Database
from core.storage.models import Customer, TriggerFire, table_of
from core.triggers.routines import blockers_of_organisation

EVENT_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")


class EventError(ValueError):
    """A bad event name or an unknown customer (bad usage: exit 2, nothing written)."""


@dataclass
class Fired:
    definition: str
    run_id: int | None
    counts: dict[str, int] = field(default_factory=dict)
    blocked: str | None = None


@dataclass
class EventOutcome:
    event: str
    fired: list[Fired] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def fire_event(
    database: Database,
    name: str,
    customers: Sequence[str],
    at: datetime,
    clock: Clock,
    *,
    started_by: str,
) -> EventOutcome:
    if not EVENT_NAME.match(name):
        raise EventError(
            f"{name!r} is not an event name (lower-case letters, digits, '_', '.', '-', "
            "starting with a letter; e.g. job_selling)"
        )
    outcome = EventOutcome(name)
    wanted = sorted(set(customers))
    with database.connect() as connection:
        if wanted:
            table = table_of(Customer)
            known = set(
                connection.execute(select(table.c.id).where(table.c.id.in_(wanted))).scalars()
            )
            unknown = [c for c in wanted if c not in known]
            if unknown:
                raise EventError(f"unknown customer(s): {', '.join(unknown)}")
        listening = [
            d
            for d in load_definitions(connection)
            if d.trigger_type == "event" and d.trigger_event == name
        ]
    enabled = [d for d in listening if d.trigger_enabled]
    for definition in listening:
        if not definition.trigger_enabled:
            outcome.warnings.append(
                f"definition {definition.id} listens to {name} but its trigger is disabled"
            )
    if not listening:
        outcome.warnings.append(
            f"no definition listens to event {name!r}: nothing was started "
            '(a definition listens with trigger {"type": "event", "event": '
            f'"{name}"}})'
        )
    for definition in enabled:

        def start(connection: Connection, definition_id: str = definition.id) -> Fired:
            fire_id = connection.execute(
                insert(table_of(TriggerFire))
                .values(
                    fire_key=f"event:{name}:{uuid.uuid4().hex}",
                    definition_id=definition_id,
                    kind="event",
                    event=name,
                    scheduled_for=at,
                    fired_at=clock.now(),
                    outcome="started",
                    detail=", ".join(wanted) if wanted else "all customers",
                    run_id=None,
                )
                .returning(table_of(TriggerFire).c.id)
            ).scalar_one()
            found = blockers_of_organisation(connection, definition_id, at)
            fire = table_of(TriggerFire)
            if found:
                detail = "; ".join(f"{b.code}: {b.detail} (fix: {b.fix})" for b in found)
                connection.execute(
                    update(fire)
                    .where(fire.c.id == fire_id)
                    .values(outcome="blocked", detail=detail)
                )
                return Fired(definition_id, None, blocked=detail)
            try:
                # Templates that fail for everyone: no run (as run start refuses it),
                # the fire says why.
                with connection.begin_nested():
                    run_id = create_run_on(
                        connection,
                        definition_id,
                        at,
                        clock,
                        started_by=started_by,
                        customers=wanted or None,
                        refuse_failing_templates=True,
                    )
            except TemplateFailsForEveryone as error:
                connection.execute(
                    update(fire)
                    .where(fire.c.id == fire_id)
                    .values(outcome="blocked", detail=str(error))
                )
                return Fired(definition_id, None, blocked=str(error))
            connection.execute(update(fire).where(fire.c.id == fire_id).values(run_id=run_id))
            return Fired(definition_id, run_id, read_counts(connection, [run_id])[run_id])

        outcome.fired.append(database.run(start))
    return outcome
