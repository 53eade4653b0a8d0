"""addresses: validity decided again (rule 4 refuses a local part over 64 characters,
RFC 5321)

Revision ID: 0016
Revises: 0015

Address validity is decided when an address is written and stored in
``address.problem``. Rule 4 is RFC 5321 syntax: a local part of more than 64
characters is not valid (it was taken). Only an address long enough to have one
can change; those are decided again with today's rule. Idempotent: running it
twice changes nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.addresses import address_problem

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000
LOCAL_PART = 64


def upgrade() -> None:
    connection = op.get_bind()
    address = sa.table(
        "address",
        sa.column("contact_id", sa.String),
        sa.column("position", sa.Integer),
        sa.column("address", sa.String),
        sa.column("problem", sa.Text),
    )
    rows = connection.execute(
        sa.select(
            address.c.contact_id, address.c.position, address.c.address, address.c.problem
        ).where(sa.func.length(address.c.address) > LOCAL_PART + 1)
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


def downgrade() -> None:
    """Nothing to undo: the verdicts are today's rule's."""
