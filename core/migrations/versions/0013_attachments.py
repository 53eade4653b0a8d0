"""documents' files attached: the folder, each document's files, a definition's
attachments, a profile's size limits, and what each recipient's message carried

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy: on SQLite a copy drops and recreates the
    # table, which fails once other tables' rows point at it (a database in use).
    op.add_column("organisation", sa.Column("documents_folder", sa.Text(), nullable=True))
    op.add_column("smtp_profile", sa.Column("max_message_bytes", sa.BigInteger(), nullable=True))
    op.add_column("smtp_profile", sa.Column("server_size", sa.BigInteger(), nullable=True))
    op.add_column("document", sa.Column("files", JSON, nullable=True))
    op.add_column(
        "definition",
        sa.Column("attach_document_files", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("definition", sa.Column("attachment_files", JSON, nullable=True))
    op.add_column("recipient", sa.Column("attachments", JSON, nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+, which msgrun requires): a batch
    # copy would drop and recreate `definition`, which other tables' keys point at.
    for table, column in (
        ("recipient", "attachments"),
        ("definition", "attachment_files"),
        ("definition", "attach_document_files"),
        ("document", "files"),
        ("smtp_profile", "server_size"),
        ("smtp_profile", "max_message_bytes"),
        ("organisation", "documents_folder"),
    ):
        op.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
