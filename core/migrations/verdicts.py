"""Migrations that decide stored address verdicts again with today's rule 4.

Validity is decided when an address is written and kept in ``address.problem``;
when the rule changes, a migration picks the addresses whose verdict can change
(``which``: a condition on the table below) and decides them again. Those are
few: they are read at once, then fixed a batch at a time. Idempotent.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection, TableClause

from core.addresses import address_problem

BATCH = 2000

ADDRESS = sa.table(
    "address",
    sa.column("contact_id", sa.String),
    sa.column("position", sa.Integer),
    sa.column("address", sa.String),
    sa.column("problem", sa.Text),
)


def decide_again(
    connection: Connection, which: Callable[[TableClause], ColumnElement[bool]]
) -> None:
    """The verdict of every address ``which`` picks, decided again and stored if it changed."""
    address = ADDRESS
    rows = connection.execute(
        sa.select(
            address.c.contact_id, address.c.position, address.c.address, address.c.problem
        ).where(which(address))
    ).all()
    changes = [
        {"c": row.contact_id, "p": row.position, "v": verdict}
        for row in rows
        if (verdict := address_problem(row.address)) != row.problem
    ]
    statement = (
        address.update()
        .where(address.c.contact_id == sa.bindparam("c"), address.c.position == sa.bindparam("p"))
        .values(problem=sa.bindparam("v"))
    )
    for start in range(0, len(changes), BATCH):
        connection.execute(statement, changes[start : start + BATCH])
