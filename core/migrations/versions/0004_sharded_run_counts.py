"""run counters in shards: one set of rows per delivering process

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("run_count", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shard", sa.Integer(), nullable=False, server_default="0"))
        batch_op.drop_constraint("pk_run_count", type_="primary")
        batch_op.create_primary_key("pk_run_count", ["run_id", "state", "shard"])
    with op.batch_alter_table("run_count", schema=None) as batch_op:
        batch_op.alter_column("shard", server_default=None)


def downgrade() -> None:
    # Fold the shards back into shard 0 before the column goes.
    op.execute(
        "UPDATE run_count SET n = (SELECT SUM(c.n) FROM run_count c WHERE c.run_id = "
        "run_count.run_id AND c.state = run_count.state) WHERE shard = 0"
    )
    op.execute("DELETE FROM run_count WHERE shard <> 0")
    with op.batch_alter_table("run_count", schema=None) as batch_op:
        batch_op.drop_constraint("pk_run_count", type_="primary")
        batch_op.create_primary_key("pk_run_count", ["run_id", "state"])
        batch_op.drop_column("shard")
