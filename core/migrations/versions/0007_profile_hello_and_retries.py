"""SMTP profile: helo_name, retry schedule, bounce_address; recipient: first attempt

Revision ID: 0007
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # All optional (NULL: the default of domain.md, Retries); no data to fix.
    with op.batch_alter_table("smtp_profile", schema=None) as batch_op:
        batch_op.add_column(sa.Column("helo_name", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column(
                "retry_after_seconds",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("retry_for_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("bounce_address", sa.String(length=320), nullable=True))
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        # When the recipient was first tried: retries end retry_for_seconds after it.
        batch_op.add_column(sa.Column("first_attempt_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.drop_column("first_attempt_at")
    with op.batch_alter_table("smtp_profile", schema=None) as batch_op:
        batch_op.drop_column("bounce_address")
        batch_op.drop_column("retry_for_seconds")
        batch_op.drop_column("retry_after_seconds")
        batch_op.drop_column("helo_name")
