"""Every state change is a named transition of the tables in core/states.py,
made by core/delivery/transitions.py alone: each allowed one works, any other is refused."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import select

from core.clock import SystemClock
from core.delivery import transitions
from core.states import (
    RECIPIENT_TRANSITIONS,
    RUN_TRANSITIONS,
    RecipientState,
    RunState,
)
from core.storage import Database
from core.storage.models import MessageRun, Recipient, table_of
from tests.delivery_support import (
    assert_counts_match_rows,
    document,
    fabricate_recipient_state,
    fabricate_run_state,
    new_run,
)

CORE = Path(__file__).resolve().parent.parent / "core"


def recipient_state(db: Database, rid: int) -> str:
    table = table_of(Recipient)
    with db.connect() as connection:
        return str(connection.execute(select(table.c.state).where(table.c.id == rid)).scalar_one())


def run_state(db: Database, run_id: int) -> str:
    table = table_of(MessageRun)
    with db.connect() as connection:
        return str(
            connection.execute(select(table.c.state).where(table.c.id == run_id)).scalar_one()
        )


def test_every_allowed_recipient_transition_moves_one_recipient_and_its_counters(
    db: Database,
) -> None:
    pairs = sorted(RECIPIENT_TRANSITIONS)
    run_id = new_run(db, document(len(pairs), 2525))
    table = table_of(Recipient)
    with db.connect() as connection:
        ids = list(
            connection.execute(
                select(table.c.id).where(table.c.run_id == run_id).order_by(table.c.position)
            ).scalars()
        )
    now = SystemClock().now()
    for rid, (source, target) in zip(ids, pairs, strict=True):
        with db.connect() as connection:
            fabricate_recipient_state(connection, run_id, [rid], "pending", source)
            moved = transitions.move(connection, run_id, [rid], source, target, now)
        assert moved == [rid], f"{source} → {target} ({RECIPIENT_TRANSITIONS[(source, target)]})"
        assert recipient_state(db, rid) == target
    assert_counts_match_rows(db, run_id)


def test_a_recipient_transition_not_in_the_table_is_refused_and_changes_nothing(
    db: Database,
) -> None:
    run_id = new_run(db, document(2, 2525))
    table = table_of(Recipient)
    with db.connect() as connection:
        first, second = connection.execute(
            select(table.c.id).where(table.c.run_id == run_id).order_by(table.c.position)
        ).scalars()
        fabricate_recipient_state(connection, run_id, [first], "pending", "sent")
    now = SystemClock().now()
    refused = [
        (s, t)
        for s in RecipientState
        for t in RecipientState
        if (s, t) not in RECIPIENT_TRANSITIONS
    ]
    assert (RecipientState.SENT, RecipientState.PENDING) in refused  # never sent twice
    assert (RecipientState.SENDING, RecipientState.PENDING) not in refused
    for source, target in refused:
        with db.connect() as connection, pytest.raises(ValueError, match="may not go from"):
            transitions.move(connection, run_id, [first], source, target, now)
    assert recipient_state(db, first) == "sent"
    # An allowed move of a recipient that is not in the state it leaves moves nothing.
    with db.connect() as connection:
        assert transitions.move(connection, run_id, [first], "sending", "sent", now) == []
        assert transitions.move(connection, run_id, [second], "unknown", "pending", now) == []
    assert (recipient_state(db, first), recipient_state(db, second)) == ("sent", "pending")
    assert_counts_match_rows(db, run_id)


def test_every_run_transition_leaves_exactly_the_states_the_table_names(db: Database) -> None:
    run_id = new_run(db, document(1, 2525))
    for name, (sources, target) in sorted(RUN_TRANSITIONS.items()):
        for state in RunState:
            with db.connect() as connection:
                fabricate_run_state(connection, run_id, state)
                moved = transitions.run_transition(connection, run_id, name)
            expected = state in sources
            assert moved is expected, f"{name} from {state}"
            assert run_state(db, run_id) == (target if expected else state), f"{name} from {state}"


def test_a_run_transition_that_has_no_name_in_the_table_is_refused(db: Database) -> None:
    run_id = new_run(db, document(1, 2525))
    with db.connect() as connection, pytest.raises(ValueError, match="no run transition"):
        transitions.run_transition(connection, run_id, "uncomplete")
    assert run_state(db, run_id) == "running"


def test_a_completed_run_is_never_stopped_and_a_stopped_one_never_resumed(db: Database) -> None:
    run_id = new_run(db, document(1, 2525))
    now = SystemClock().now()
    with db.connect() as connection:
        fabricate_run_state(connection, run_id, "completed")
        assert not transitions.request_stop(connection, run_id, now, "me", delivered=True)
        assert not transitions.request_stop(connection, run_id, now, "me", delivered=False)
        fabricate_run_state(connection, run_id, "stopped")
        assert not transitions.resume(connection, run_id)
    assert run_state(db, run_id) == "stopped"


def _state_writes(path: Path) -> list[int]:
    """Lines of ``path`` that UPDATE a ``state`` column (``update(…).values(state=…)``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "values":
            continue
        sets_state = (
            any(k.arg == "state" for k in node.keywords)
            or any(
                isinstance(a, ast.Dict)
                and any(isinstance(k, ast.Constant) and k.value == "state" for k in a.keys)
                for a in node.args
            )
            or any(k.arg is None for k in node.keywords)
        )  # **values: look closer below
        if not sets_state:
            continue
        chain: ast.AST = node.func.value
        while isinstance(chain, ast.Call | ast.Attribute):
            if isinstance(chain, ast.Call):
                if isinstance(chain.func, ast.Name) and chain.func.id == "update":
                    if any(k.arg == "state" for k in node.keywords) or not any(
                        k.arg is None for k in node.keywords
                    ):
                        found.append(node.lineno)
                    break
                chain = chain.func
            else:
                chain = chain.value
    return found


def test_no_module_but_transitions_writes_a_state_column() -> None:
    writers = {
        str(path.relative_to(CORE.parent)): lines
        for path in sorted(CORE.rglob("*.py"))
        if path.name != "transitions.py" and "migrations" not in path.parts
        if (lines := _state_writes(path))
    }
    assert writers == {}
    assert _state_writes(CORE / "delivery" / "transitions.py")  # the finder finds them
