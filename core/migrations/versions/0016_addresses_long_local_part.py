"""addresses: validity decided again (rule 4 refuses a local part over 64 characters,
RFC 5321)

Revision ID: 0016
Revises: 0015

Address validity is decided when an address is written and stored in
``address.problem``. Rule 4 is RFC 5321 syntax: a local part of more than 64
characters is not valid (it was taken). Only an address long enough to have one
can change; those are decided again with today's rule. Idempotent: running it
twice changes nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.migrations.verdicts import decide_again

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCAL_PART = 64


def upgrade() -> None:
    # Only an address long enough for a local part over 64 characters can change.
    decide_again(op.get_bind(), lambda address: sa.func.length(address.c.address) > LOCAL_PART + 1)


def downgrade() -> None:
    """Nothing to undo: the verdicts are today's rule's."""
