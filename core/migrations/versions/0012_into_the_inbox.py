"""into the inbox: DKIM per profile, Reply-To, sender authentication results

Revision ID: 0012
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("smtp_profile", schema=None) as batch_op:
        # {"domain", "selector", "private_key_file" | "private_key_env", "algorithm"}:
        # where the key is, never the key (inbox.md).
        batch_op.add_column(sa.Column("dkim", json_type(), nullable=True))
        batch_op.add_column(
            sa.Column("server_signs_dkim", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("reply_to", sa.String(length=320), nullable=True))
        # The last smtp test's spf/dkim/dmarc steps (the plan warns on a failed dmarc).
        batch_op.add_column(sa.Column("last_sender_auth", json_type(), nullable=True))
    with op.batch_alter_table("definition", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_to", sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("definition", schema=None) as batch_op:
        batch_op.drop_column("reply_to")
    with op.batch_alter_table("smtp_profile", schema=None) as batch_op:
        batch_op.drop_column("last_sender_auth")
        batch_op.drop_column("reply_to")
        batch_op.drop_column("server_signs_dkim")
        batch_op.drop_column("dkim")
