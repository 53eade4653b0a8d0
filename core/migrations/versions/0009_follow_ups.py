"""follow-up runs: the run a run follows up, and recipients handed on to one

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("message_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("follow_up_of", sa.Integer(), nullable=True))
        batch_op.create_index("ix_message_run_follow_up_of", ["follow_up_of"])
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handed_on_to", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.drop_column("handed_on_to")
    with op.batch_alter_table("message_run", schema=None) as batch_op:
        batch_op.drop_index("ix_message_run_follow_up_of")
        batch_op.drop_column("follow_up_of")
