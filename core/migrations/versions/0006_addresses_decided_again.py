"""addresses: validity decided again (reserved domains are valid: reasons.md rule 4)

Revision ID: 0006
Revises: 0004

Address validity is decided when an address is written and stored in
``address.problem``. Rule 4 is now syntax only, so an address at a domain
reserved for testing or local use (``.test``, ``.example``, …), refused before
as "special-use or reserved name", is valid: every stored verdict is decided
again with today's rule. Idempotent: running it twice changes nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from core.migrations.verdicts import decide_again

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Only a stored problem can change: the rule got more permissive, and a
    # valid address stays valid.
    decide_again(op.get_bind(), lambda address: address.c.problem.is_not(None))


def downgrade() -> None:
    # The earlier verdicts are not kept; the next import decides them again.
    pass
