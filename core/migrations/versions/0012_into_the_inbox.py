"""into the inbox: DKIM per profile, Reply-To, sender authentication results, unsubscribe

Revision ID: 0012
Revises: 0010
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy: on SQLite a copy drops and recreates the
    # table, which fails once other tables' rows point at it (a database in use).
    # {"domain", "selector", "private_key_file" | "private_key_env", "algorithm"}:
    # where the key is, never the key (inbox.md).
    op.add_column("smtp_profile", sa.Column("dkim", json_type(), nullable=True))
    op.add_column(
        "smtp_profile",
        sa.Column("server_signs_dkim", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("smtp_profile", sa.Column("reply_to", sa.String(length=320), nullable=True))
    # The last smtp test's spf/dkim/dmarc steps (the plan warns on a failed dmarc).
    op.add_column("smtp_profile", sa.Column("last_sender_auth", json_type(), nullable=True))
    op.add_column("definition", sa.Column("reply_to", sa.String(length=320), nullable=True))
    # Whether the definition offers unsubscribe (NULL: its kind's default).
    op.add_column("definition", sa.Column("unsubscribe", sa.Boolean(), nullable=True))
    # {"url", "address"}: where unsubscribe requests go (inbox.md).
    op.add_column("organisation", sa.Column("unsubscribe", json_type(), nullable=True))
    # Secrets of the database itself, made once, here, in the migration's transaction:
    # the unsubscribe tokens' HMAC key. An import never touches it.
    secret = op.create_table(
        "msgrun_secret",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_msgrun_secret")),
    )
    op.bulk_insert(secret, [{"name": "unsubscribe", "value": secrets.token_hex(32)}])
    op.create_table(
        "unsubscribe",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("address", sa.String(length=400), nullable=False),
        sa.Column("address_lower", sa.String(length=400), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.String(length=200), nullable=False),
        sa.Column("preference", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("how", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unsubscribe")),
        sa.UniqueConstraint(
            "contact_id",
            "address_lower",
            "preference",
            name=op.f("uq_unsubscribe_contact_id_address_lower_preference"),
        ),
    )
    op.create_index(op.f("ix_unsubscribe_customer_id"), "unsubscribe", ["customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_unsubscribe_customer_id"), table_name="unsubscribe")
    op.drop_table("unsubscribe")
    op.drop_table("msgrun_secret")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+, which msgrun requires).
    for table, column in (
        ("organisation", "unsubscribe"),
        ("definition", "unsubscribe"),
        ("definition", "reply_to"),
        ("smtp_profile", "last_sender_auth"),
        ("smtp_profile", "reply_to"),
        ("smtp_profile", "server_signs_dkim"),
        ("smtp_profile", "dkim"),
    ):
        op.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
