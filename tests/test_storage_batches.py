"""The statements of many rows that recording uses (storage.sql.update_rows and
insert_rows), on both databases: every row written once, the guard held row by
row, the count of rows changed right across statements of ROWS_PER_STATEMENT."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from core.storage import Database
from core.storage.sql import ROWS_PER_STATEMENT, driver_instants, insert_rows, update_rows


def make_suppressions(db: Database, count: int) -> None:
    with db.engine.begin() as c:
        insert_rows(
            c,
            "suppression",
            ("address_lower", "address", "reason", "since"),
            [
                (f"a{i}@example.com", f"A{i}@example.com", "manual", "2026-11-01")
                for i in range(count)
            ],
        )


def test_insert_rows_spans_statements_and_skips_conflicts(db: Database) -> None:
    count = ROWS_PER_STATEMENT * 2 + 7
    make_suppressions(db, count)
    with db.engine.begin() as c:
        insert_rows(  # half of them again, and one new: the conflict clause skips the known
            c,
            "suppression",
            ("address_lower", "address", "reason", "since"),
            [(f"a{i}@example.com", "again", "manual", "2026-11-01") for i in range(0, count, 2)]
            + [(f"a{count}@example.com", "again", "manual", "2026-11-01")],
            conflict="ON CONFLICT (address_lower) DO NOTHING",
        )
    with db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM suppression")).scalar() == count + 1
        assert (
            c.execute(text("SELECT count(*) FROM suppression WHERE address = 'again'")).scalar()
            == 1
        )


def test_update_rows_guards_each_row_and_counts_what_changed(db: Database) -> None:
    count = ROWS_PER_STATEMENT + 3
    make_suppressions(db, count)
    with db.engine.begin() as c:
        at = driver_instants(c)(datetime(2026, 11, 2, 8, tzinfo=UTC))
        changed = update_rows(
            c,
            "suppression",
            (("address", "{}"), ("reason", "COALESCE(NULL, {})"), ("since", "since")),
            "address_lower",
            [(f"B{i}", f"why {i}", f"a{i}@example.com") for i in range(count)]
            + [("nobody", "none", "missing@example.com")],
            condition="address_lower <> 'a1@example.com'",
        )
        assert at is not None
    assert changed == count - 1  # not a1 (the guard), not the missing one
    with db.engine.connect() as c:
        rows = dict(
            c.execute(text("SELECT address_lower, address || '/' || reason FROM suppression")).all()
        )
    assert rows["a0@example.com"] == "B0/why 0"
    assert rows[f"a{count - 1}@example.com"] == f"B{count - 1}/why {count - 1}"
    assert rows["a1@example.com"] == "A1@example.com/manual"
    assert "missing@example.com" not in rows


def test_nothing_to_write_is_no_statement(db: Database) -> None:
    with db.engine.begin() as c:
        assert update_rows(c, "suppression", (("address", "{}"),), "address_lower", []) == 0
        insert_rows(c, "suppression", ("address_lower",), [])


def test_rows_are_cut_into_chunks_of_a_power_of_two_and_in_lists_padded() -> None:
    from core.storage.sql import _chunks, padded

    for count in (1, 7, 1000, 1024, 1400, 3000):
        sizes = [len(chunk) for chunk in _chunks([(i,) for i in range(count)])]
        assert sum(sizes) == count
        assert all(size & (size - 1) == 0 and size <= ROWS_PER_STATEMENT for size in sizes)
        assert sizes == sorted(sizes, reverse=True)
    assert padded([3, 5, 9]) == [3, 5, 9, 9]
    assert padded([4]) == [4] and padded([]) == []
    assert len(padded(list(range(1025)))) == 2048


def test_an_instant_without_a_timezone_is_refused_as_the_orm_refuses_it(db: Database) -> None:
    import pytest

    with db.engine.connect() as c, pytest.raises(ValueError, match="timezone-aware"):
        driver_instants(c)(datetime(2026, 11, 2, 8))
