"""routines and events: fire records and routine watches

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "trigger_fire",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fire_key", sa.String(length=400), nullable=False),
        sa.Column("definition_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=200), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(), nullable=False),
        sa.Column("fired_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["definition.id"],
            name=op.f("fk_trigger_fire_definition_id_definition"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trigger_fire")),
        sa.UniqueConstraint("fire_key", name=op.f("uq_trigger_fire_fire_key")),
    )
    op.create_index(
        "ix_trigger_fire_definition_scheduled",
        "trigger_fire",
        ["definition_id", "scheduled_for"],
        unique=False,
    )
    op.create_table(
        "routine_watch",
        sa.Column("definition_id", ID, nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("checked_until", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["definition.id"],
            name=op.f("fk_routine_watch_definition_id_definition"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("definition_id", name=op.f("pk_routine_watch")),
    )


def downgrade() -> None:
    op.drop_table("routine_watch")
    op.drop_index("ix_trigger_fire_definition_scheduled", table_name="trigger_fire")
    op.drop_table("trigger_fire")
