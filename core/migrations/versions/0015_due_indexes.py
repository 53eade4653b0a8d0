"""the held and the retrying recipients indexed by when they are due (partial indexes):
a run holding a million recipients overnight is not read whole each time a worker
looks for due ones, nor each time the console asks when the next is due

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = (
    ("ix_recipient_held_due", "send_after", "held"),
    ("ix_recipient_retrying_due", "next_attempt_at", "retrying"),
)


def upgrade() -> None:
    for name, column, state in DUE:
        where = sa.text(f"state = '{state}'")
        op.create_index(
            name,
            "recipient",
            ["run_id", column, "position"],
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    for name, _, _ in reversed(DUE):
        op.drop_index(name, table_name="recipient")
