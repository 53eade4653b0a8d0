"""send claims: one row per dedup key being sent, so two runs never send it twice

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "send_claim",
        sa.Column("definition_id", ID, nullable=False),
        sa.Column("key", sa.String(length=800), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("definition_id", "key", name=op.f("pk_send_claim")),
    )


def downgrade() -> None:
    op.drop_table("send_claim")
