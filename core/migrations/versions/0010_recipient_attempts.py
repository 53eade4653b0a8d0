"""every delivery attempt of a recipient kept: its instant, the reply, whether it settled it

Recipients that already have a reply keep their last reply as their one known attempt.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A recipient that was tried and has a reply (or a fault) recorded: its last attempt.
KNOWN_LAST_ATTEMPT = """
INSERT INTO recipient_attempt (recipient_id, at, smtp_code, reply, settled)
SELECT id, COALESCE(sent_at, updated_at), smtp_code, COALESCE(smtp_reply, error),
       CASE WHEN state IN ('sent', 'failed', 'unknown') THEN TRUE ELSE FALSE END
FROM recipient
WHERE attempts > 0
  AND (smtp_code IS NOT NULL OR smtp_reply IS NOT NULL OR error IS NOT NULL)
  AND COALESCE(sent_at, updated_at) IS NOT NULL
ORDER BY id
"""


def upgrade() -> None:
    op.create_table(
        "recipient_attempt",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["recipient.id"],
            ondelete="CASCADE",
            name=op.f("fk_recipient_attempt_recipient_id_recipient"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipient_attempt")),
    )
    op.create_index(
        op.f("ix_recipient_attempt_recipient_id"), "recipient_attempt", ["recipient_id"]
    )
    op.execute(KNOWN_LAST_ATTEMPT)


def downgrade() -> None:
    op.drop_index(op.f("ix_recipient_attempt_recipient_id"), table_name="recipient_attempt")
    op.drop_table("recipient_attempt")
