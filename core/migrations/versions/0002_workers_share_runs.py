"""workers share runs: claims, worker leases, run shares, profile connection slots

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_recipient_claimed_by", ["claimed_by"], unique=False)

    op.create_table(
        "worker",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker")),
    )
    op.create_index(op.f("ix_worker_expires_at"), "worker", ["expires_at"], unique=False)

    op.create_table(
        "run_share",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("profile_id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["message_run.id"],
            name=op.f("fk_run_share_run_id_message_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "worker_id", name=op.f("pk_run_share")),
    )
    op.create_index(op.f("ix_run_share_profile_id"), "run_share", ["profile_id"], unique=False)

    op.create_table(
        "profile_slot",
        sa.Column("profile_id", ID, nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["smtp_profile.id"],
            name=op.f("fk_profile_slot_profile_id_smtp_profile"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("profile_id", "slot", name=op.f("pk_profile_slot")),
    )


def downgrade() -> None:
    op.drop_table("profile_slot")
    op.drop_index(op.f("ix_run_share_profile_id"), table_name="run_share")
    op.drop_table("run_share")
    op.drop_index(op.f("ix_worker_expires_at"), table_name="worker")
    op.drop_table("worker")
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.drop_index("ix_recipient_claimed_by")
        batch_op.drop_column("claimed_by")
