"""the planner reads the ledger and other runs' holds a page of customers at a time,
and a follow-up its run's recipients a page at a time: indexes for both

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_history_definition_document", "history", ["definition_id", "document_id"])
    op.create_index("ix_recipient_run_customer", "recipient", ["run_id", "customer_id"])


def downgrade() -> None:
    op.drop_index("ix_recipient_run_customer", table_name="recipient")
    op.drop_index("ix_history_definition_document", table_name="history")
