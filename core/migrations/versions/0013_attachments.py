"""documents' files attached: the folder, each document's files, a definition's
attachments, a profile's size limits, and what each recipient's message carried

Revision ID: 0013
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("documents_folder", sa.Text(), nullable=True))
    with op.batch_alter_table("smtp_profile", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_message_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("server_size", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.add_column(sa.Column("files", JSON, nullable=True))
    with op.batch_alter_table("definition", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "attach_document_files", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch_op.add_column(sa.Column("attachment_files", JSON, nullable=True))
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attachments", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.drop_column("attachments")
    with op.batch_alter_table("definition", schema=None) as batch_op:
        batch_op.drop_column("attachment_files")
        batch_op.drop_column("attach_document_files")
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.drop_column("files")
    with op.batch_alter_table("smtp_profile", schema=None) as batch_op:
        batch_op.drop_column("server_size")
        batch_op.drop_column("max_message_bytes")
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.drop_column("documents_folder")
