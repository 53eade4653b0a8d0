"""addresses: validity decided again (reserved domains are valid: reasons.md rule 4)

Revision ID: 0006
Revises: 0004

Address validity is decided when an address is written and stored in
``address.problem``. Rule 4 is now syntax only, so an address at a domain
reserved for testing or local use (``.test``, ``.example``, …), refused before
as "special-use or reserved name", is valid: every stored verdict is decided
again with today's rule. Idempotent: running it twice changes nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.addresses import address_problem

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000


def upgrade() -> None:
    connection = op.get_bind()
    address = sa.table(
        "address",
        sa.column("contact_id", sa.String),
        sa.column("position", sa.Integer),
        sa.column("address", sa.String),
        sa.column("problem", sa.Text),
    )
    # Only a stored problem can change: the rule got more permissive, and a
    # valid address stays valid. Those are few; read them all, then fix them.
    rows = connection.execute(
        sa.select(
            address.c.contact_id, address.c.position, address.c.address, address.c.problem
        ).where(address.c.problem.is_not(None))
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
    # The earlier verdicts are not kept; the next import decides them again.
    pass
