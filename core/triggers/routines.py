"""Routines: definitions that start a run when their cron expression fires.

``fire_due`` is called by every worker about once a second. For each enabled
routine it looks at the fire times since the routine was last looked at:

- none: nothing to do;
- one or more: the latest becomes a run (marked *late* when it is more than
  ``LATE_SECONDS`` old: the workers were down), and the others are recorded
  as *skipped* — missed fires are not replayed one by one.

Each fire time is one ``trigger_fire`` row with a unique key; the row and
the run are written in one transaction, so however many workers look at the
same moment, one of them starts the run and the others find the row there.
A routine blocked by the organisation (``auto_send_disabled``, sender not
verified) records its fire as *blocked*, with the reason and the fix.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, select, update

from core.clock import Clock, format_instant
from core.delivery.starting import TemplateFailsForEveryone, create_run_on
from core.planner.facts import DefinitionFacts
from core.planner.load import load_definition, load_definitions, load_organisation
from core.planner.plan import build_context
from core.planner.reasons import fix_for
from core.planner.rules import auto_send_disabled, sender_not_verified
from core.storage.database import Database
from core.storage.models import Definition, MessageRun, RoutineWatch, TriggerFire, table_of
from core.storage.sql import insert_ignoring
from core.triggers.schedule import fire_times, next_fire

LATE_SECONDS = 60.0
FIRE = table_of(TriggerFire)
WATCH = table_of(RoutineWatch)
RUN = table_of(MessageRun)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Blocker:
    code: str
    detail: str
    fix: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail, "fix": self.fix}


def blockers(connection: Connection, definition: DefinitionFacts, at: datetime) -> list[Blocker]:
    """Why this routine would not send now (empty: it would)."""
    found: list[Blocker] = []
    if not definition.trigger_enabled:
        found.append(
            Blocker(
                "disabled",
                f"the routine ({definition.trigger_cron}) is disabled",
                "enable the routine (console: Routines, d; or trigger.enabled in an import)",
            )
        )
    return found + organisation_blockers(connection, definition, at)


def organisation_blockers(
    connection: Connection, definition: DefinitionFacts, at: datetime
) -> list[Blocker]:
    """The organisation's reasons to send nothing for this definition (rules 1 and 2)."""
    organisation = load_organisation(connection)
    ctx = build_context(connection, organisation, definition, at, [])
    found = []
    for rule in (sender_not_verified, auto_send_disabled):
        reason = rule(ctx)
        if reason is not None:
            found.append(Blocker(reason.code, reason.detail, fix_for(reason.code)))
    return found


def blockers_of_organisation(
    connection: Connection, definition_id: str, at: datetime
) -> list[Blocker]:
    return organisation_blockers(connection, load_definition(connection, definition_id), at)


def fire_key(definition_id: str, scheduled_for: datetime) -> str:
    return f"routine:{definition_id}:{format_instant(scheduled_for)}"


def routines(connection: Connection) -> list[DefinitionFacts]:
    return [d for d in load_definitions(connection) if d.trigger_type == "routine"]


def fire_due(database: Database, clock: Clock) -> list[int]:
    """Start the runs of routines whose time has come; the new run ids."""
    now = clock.now()
    started: list[int] = []
    with database.connect() as connection:
        names = [d.id for d in routines(connection) if d.trigger_enabled]
    for definition_id in names:
        run_id = database.run(partial(_fire_one, definition_id=definition_id, now=now, clock=clock))
        if run_id is not None:
            started.append(run_id)
    return started


def _fire_one(
    connection: Connection, definition_id: str, now: datetime, clock: Clock
) -> int | None:
    definition = next((d for d in routines(connection) if d.id == definition_id), None)
    if definition is None or not definition.trigger_enabled or not definition.trigger_cron:
        return None
    watch_query = select(WATCH).where(WATCH.c.definition_id == definition_id)
    if connection.dialect.name == "postgresql":
        watch_query = watch_query.with_for_update()
    watch = connection.execute(watch_query).first()
    if watch is None or watch.cron != definition.trigger_cron:
        # First look at this schedule: fires from now on are its own.
        connection.execute(
            insert_ignoring(connection, WATCH, "definition_id"),
            [
                {
                    "definition_id": definition_id,
                    "cron": definition.trigger_cron,
                    "checked_until": now,
                }
            ],
        )
        connection.execute(
            update(WATCH)
            .where(WATCH.c.definition_id == definition_id)
            .values(cron=definition.trigger_cron, checked_until=now)
        )
        return None
    if watch.checked_until >= now:
        return None
    organisation = load_organisation(connection)
    due = fire_times(definition.trigger_cron, organisation.timezone, watch.checked_until, now)
    connection.execute(
        update(WATCH).where(WATCH.c.definition_id == definition_id).values(checked_until=now)
    )
    if not due:
        return None
    latest, missed = due[-1], due[:-1]
    late = (now - latest).total_seconds() > LATE_SECONDS
    rows: list[dict[str, Any]] = [
        {
            "fire_key": fire_key(definition_id, moment),
            "definition_id": definition_id,
            "kind": "routine",
            "event": None,
            "scheduled_for": moment,
            "fired_at": now,
            "outcome": "skipped",
            "detail": (
                f"missed while no worker was running; only the latest missed fire "
                f"({format_instant(latest)}) ran"
            ),
            "run_id": None,
        }
        for moment in missed
    ]
    if rows:
        connection.execute(insert_ignoring(connection, FIRE, "fire_key"), rows)
    mine = connection.execute(
        insert_ignoring(connection, FIRE, "fire_key")
        .values(
            fire_key=fire_key(definition_id, latest),
            definition_id=definition_id,
            kind="routine",
            event=None,
            scheduled_for=latest,
            fired_at=now,
            outcome="late" if late else "started",
            detail=None,
            run_id=None,
        )
        .returning(FIRE.c.id)
    ).scalar()
    if mine is None:
        return None  # another worker fired it
    stopped = blockers(connection, definition, now)
    if stopped:
        detail = "; ".join(f"{b.code}: {b.detail} (fix: {b.fix})" for b in stopped)
        connection.execute(
            update(FIRE).where(FIRE.c.id == mine).values(outcome="blocked", detail=detail)
        )
        log.warning("routine %s blocked: %s", definition_id, detail)
        return None
    local = latest.astimezone(_zone(organisation.timezone))
    who = f"routine {definition_id} @ {local:%Y-%m-%d %H:%M %z}" + (" (late)" if late else "")
    try:
        # A run whose templates fail for everyone is not made (as run start refuses it):
        # the fire records why, and the schedule goes on.
        with connection.begin_nested():
            run_id = create_run_on(
                connection,
                definition_id,
                latest if not late else now,
                clock,
                started_by=who,
                refuse_failing_templates=True,
            )
    except TemplateFailsForEveryone as error:
        connection.execute(
            update(FIRE).where(FIRE.c.id == mine).values(outcome="blocked", detail=str(error))
        )
        log.warning("routine %s blocked: %s", definition_id, error)
        return None
    connection.execute(update(FIRE).where(FIRE.c.id == mine).values(run_id=run_id))
    return run_id


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


# -- what the operator sees --------------------------------------------------------


@dataclass
class RoutineView:
    definition: str
    name: str
    cron: str
    enabled: bool
    timezone: str
    next_fire: datetime | None
    last: dict[str, Any] | None
    blockers: list[Blocker]

    def as_json(self) -> dict[str, Any]:
        zone = _zone(self.timezone)
        return {
            "definition": self.definition,
            "name": self.name,
            "cron": self.cron,
            "enabled": self.enabled,
            "timezone": self.timezone,
            "next_fire_utc": format_instant(self.next_fire) if self.next_fire else None,
            "next_fire_local": (
                self.next_fire.astimezone(zone).isoformat() if self.next_fire else None
            ),
            "last": self.last,
            "would_send": not self.blockers,
            "blockers": [b.as_json() for b in self.blockers],
        }


def list_routines(database: Database, now: datetime) -> list[RoutineView]:
    with database.connect() as connection:
        found = routines(connection)
        if not found:  # a new database has no organisation to read yet either
            return []
        organisation = load_organisation(connection)
        views = []
        for definition in found:
            last_row = connection.execute(
                select(FIRE, RUN.c.state.label("run_state"))
                .select_from(FIRE.outerjoin(RUN, RUN.c.id == FIRE.c.run_id))
                .where(FIRE.c.definition_id == definition.id, FIRE.c.outcome != "skipped")
                .order_by(FIRE.c.scheduled_for.desc(), FIRE.c.id.desc())
                .limit(1)
            ).first()
            skipped = connection.execute(
                select(FIRE.c.id).where(
                    FIRE.c.definition_id == definition.id, FIRE.c.outcome == "skipped"
                )
            ).all()
            last = None
            if last_row is not None:
                last = {
                    "scheduled_for": format_instant(last_row.scheduled_for),
                    "fired_at": format_instant(last_row.fired_at),
                    "outcome": last_row.outcome,
                    "detail": last_row.detail,
                    "run": last_row.run_id,
                    "run_state": last_row.run_state,
                    "skipped_fires": len(skipped),
                }
            cron = definition.trigger_cron or ""
            views.append(
                RoutineView(
                    definition=definition.id,
                    name=definition.name,
                    cron=cron,
                    enabled=definition.trigger_enabled,
                    timezone=organisation.timezone,
                    next_fire=next_fire(cron, organisation.timezone, now)
                    if definition.trigger_enabled and cron
                    else None,
                    last=last,
                    blockers=blockers(connection, definition, now),
                )
            )
    return views


def set_enabled(database: Database, definition_id: str, enabled: bool) -> None:
    table = table_of(Definition)
    with database.connect() as connection:
        connection.execute(
            update(table)
            .where(table.c.id == definition_id, table.c.trigger_type == "routine")
            .values(trigger_enabled=enabled)
        )


def fires(database: Database, definition_id: str) -> list[Any]:
    """Every recorded fire of a definition, newest first."""
    with database.connect() as connection:
        return list(
            connection.execute(
                select(FIRE)
                .where(FIRE.c.definition_id == definition_id)
                .order_by(FIRE.c.scheduled_for.desc(), FIRE.c.id.desc())
            ).all()
        )


def run_now(database: Database, definition_id: str, clock: Clock, started_by: str) -> int:
    """A person starts a routine's run now (recorded with its fires, not instead of one)."""
    now = clock.now()

    def start(connection: Connection) -> int:
        run_id = create_run_on(
            connection,
            definition_id,
            now,
            clock,
            started_by=started_by,
            refuse_failing_templates=True,
        )
        connection.execute(
            FIRE.insert().values(
                fire_key=f"routine-now:{definition_id}:{uuid.uuid4().hex}",
                definition_id=definition_id,
                kind="routine",
                event=None,
                scheduled_for=now,
                fired_at=now,
                outcome="started",
                detail=f"run now by {started_by}",
                run_id=run_id,
            )
        )
        return run_id

    return database.run(start)
