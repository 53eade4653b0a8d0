"""reports read back: bounce_report, recipient_outcome; suppressions name their report

Revision ID: 0008
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bounce_report",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(length=400), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("feedback_type", sa.String(length=64), nullable=True),
        sa.Column("original_message_id", sa.String(length=300), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=False),
        sa.Column("reported_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_report")),
        sa.UniqueConstraint("message_key", name=op.f("uq_bounce_report_message_key")),
    )
    op.create_index(op.f("ix_bounce_report_read_at"), "bounce_report", ["read_at"])
    op.create_table(
        "recipient_outcome",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=400), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("bounce_class", sa.String(length=8), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("reported_at", sa.DateTime(), nullable=False),
        sa.Column("matched_by", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["bounce_report.id"],
            ondelete="CASCADE",
            name=op.f("fk_recipient_outcome_report_id_bounce_report"),
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["recipient.id"],
            ondelete="SET NULL",
            name=op.f("fk_recipient_outcome_recipient_id_recipient"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipient_outcome")),
    )
    op.create_index(op.f("ix_recipient_outcome_report_id"), "recipient_outcome", ["report_id"])
    op.create_index(
        op.f("ix_recipient_outcome_recipient_id"), "recipient_outcome", ["recipient_id"]
    )
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("detail", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.drop_column("detail")
        batch_op.drop_column("run_id")
        batch_op.drop_column("report_id")
    op.drop_index(op.f("ix_recipient_outcome_recipient_id"), table_name="recipient_outcome")
    op.drop_index(op.f("ix_recipient_outcome_report_id"), table_name="recipient_outcome")
    op.drop_table("recipient_outcome")
    op.drop_index(op.f("ix_bounce_report_read_at"), table_name="bounce_report")
    op.drop_table("bounce_report")
