"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "billing_method",
        sa.Column(
            "id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column(
            "send_rule_offsets",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "service_statuses_for_sending",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_method")),
    )
    op.create_table(
        "customer",
        sa.Column(
            "id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("cluster", sa.String(length=200), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column(
            "attributes", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer")),
    )
    op.create_table(
        "organisation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("sender_verified", sa.Boolean(), nullable=False),
        sa.Column("auto_send_invoices", sa.Boolean(), nullable=False),
        sa.Column("auto_send_payment_receipts", sa.Boolean(), nullable=False),
        sa.Column("auto_send_confirmations", sa.Boolean(), nullable=False),
        sa.Column(
            "default_address_preferences",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "default_contact_preferences",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisation")),
    )
    op.create_table(
        "smtp_profile",
        sa.Column(
            "id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("security", sa.String(length=16), nullable=False),
        sa.Column("username", sa.String(length=320), nullable=True),
        sa.Column("password_env", sa.String(length=200), nullable=True),
        sa.Column("from_address", sa.String(length=320), nullable=False),
        sa.Column("from_name", sa.String(length=300), nullable=True),
        sa.Column("max_connections", sa.Integer(), nullable=False),
        sa.Column("rate_per_second", sa.Float(), nullable=True),
        sa.Column("tls_verify", sa.Boolean(), nullable=False),
        sa.Column("ca_file", sa.Text(), nullable=True),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("last_test_at", sa.DateTime(), nullable=True),
        sa.Column("last_test_ok", sa.Boolean(), nullable=True),
        sa.Column("last_test_ok_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smtp_profile")),
    )
    op.create_table(
        "suppression",
        sa.Column("address_lower", sa.String(length=400), nullable=False),
        sa.Column("address", sa.String(length=400), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("address_lower", name=op.f("pk_suppression")),
    )
    op.create_table(
        "contact",
        sa.Column(
            "id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "customer_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("allow_email", sa.Boolean(), nullable=False),
        sa.Column("pref_send_invoice_reminders", sa.Boolean(), nullable=True),
        sa.Column("pref_send_service_reminders", sa.Boolean(), nullable=True),
        sa.Column("pref_email_confirmations_all_jobs", sa.Boolean(), nullable=True),
        sa.Column("pref_exclude_from_broadcasts", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_contact_customer_id_customer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact")),
    )
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contact_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "definition",
        sa.Column(
            "id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("address_key", sa.String(length=100), nullable=False),
        sa.Column(
            "smtp_profile_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("trigger_type", sa.String(length=16), nullable=False),
        sa.Column("trigger_cron", sa.String(length=200), nullable=True),
        sa.Column("trigger_event", sa.String(length=200), nullable=True),
        sa.Column("trigger_enabled", sa.Boolean(), nullable=False),
        sa.Column(
            "clusters", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column(
            "document_statuses",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "audience", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("quiet_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_end", sa.String(length=5), nullable=True),
        sa.Column("dedup", sa.String(length=16), nullable=False),
        sa.Column("use_billing_rules", sa.Boolean(), nullable=False),
        sa.Column("template_subject", sa.Text(), nullable=False),
        sa.Column("template_text", sa.Text(), nullable=False),
        sa.Column("template_html", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["smtp_profile_id"],
            ["smtp_profile.id"],
            name=op.f("fk_definition_smtp_profile_id_smtp_profile"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_definition")),
    )
    op.create_table(
        "service",
        sa.Column(
            "id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "customer_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("allow_billing_email", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_service_customer_id_customer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service")),
    )
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "address",
        sa.Column(
            "contact_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "customer_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=400), nullable=False),
        sa.Column("address_lower", sa.String(length=400), nullable=False),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("pref_invoices", sa.Boolean(), nullable=True),
        sa.Column("pref_payment_receipts", sa.Boolean(), nullable=True),
        sa.Column("pref_confirmations", sa.Boolean(), nullable=True),
        sa.Column("pref_status_updates", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_address_contact_id_contact"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_address_customer_id_customer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", "position", name=op.f("pk_address")),
    )
    with op.batch_alter_table("address", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_address_address_lower"), ["address_lower"], unique=False
        )
        batch_op.create_index("ix_address_customer_key", ["customer_id", "key"], unique=False)

    op.create_table(
        "document",
        sa.Column(
            "id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("number", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "customer_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "service_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "billing_method_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("amount", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.ForeignKeyConstraint(
            ["billing_method_id"],
            ["billing_method.id"],
            name=op.f("fk_document_billing_method_id_billing_method"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_document_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_document_service_id_service")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document")),
    )
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.create_index("ix_document_customer_kind", ["customer_id", "kind"], unique=False)

    op.create_table(
        "message_run",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "definition_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "smtp_profile_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("planned_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("stop_requested_at", sa.DateTime(), nullable=True),
        sa.Column("stop_requested_by", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("message_token", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["definition.id"],
            name=op.f("fk_message_run_definition_id_definition"),
        ),
        sa.ForeignKeyConstraint(
            ["smtp_profile_id"],
            ["smtp_profile.id"],
            name=op.f("fk_message_run_smtp_profile_id_smtp_profile"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_run")),
    )
    with op.batch_alter_table("message_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_run_definition_id"), ["definition_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_message_run_state"), ["state"], unique=False)

    op.create_table(
        "history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "definition_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "customer_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("address", sa.String(length=400), nullable=True),
        sa.Column("address_lower", sa.String(length=400), nullable=True),
        sa.Column(
            "document_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("offset_days", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_history_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(
            ["definition_id"], ["definition.id"], name=op.f("fk_history_definition_id_definition")
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["document.id"], name=op.f("fk_history_document_id_document")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_history_fingerprint")),
    )
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_history_definition_customer", ["definition_id", "customer_id"], unique=False
        )

    op.create_table(
        "recipient",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "customer_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "contact_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("address", sa.String(length=400), nullable=True),
        sa.Column(
            "document_id",
            sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column(
            "reasons", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("send_after", sa.DateTime(), nullable=True),
        sa.Column("offset_days", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("smtp_reply", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["message_run.id"],
            name=op.f("fk_recipient_run_id_message_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipient")),
        sa.UniqueConstraint("run_id", "position", name=op.f("uq_recipient_run_id_position")),
    )
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.create_index(
            "ix_recipient_run_state_position", ["run_id", "state", "position"], unique=False
        )

    op.create_table(
        "run_count",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["message_run.id"],
            name=op.f("fk_run_count_run_id_message_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "state", name=op.f("pk_run_count")),
    )


def downgrade() -> None:

    op.drop_table("run_count")
    with op.batch_alter_table("recipient", schema=None) as batch_op:
        batch_op.drop_index("ix_recipient_run_state_position")

    op.drop_table("recipient")
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.drop_index("ix_history_definition_customer")

    op.drop_table("history")
    with op.batch_alter_table("message_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_run_state"))
        batch_op.drop_index(batch_op.f("ix_message_run_definition_id"))

    op.drop_table("message_run")
    with op.batch_alter_table("document", schema=None) as batch_op:
        batch_op.drop_index("ix_document_customer_kind")

    op.drop_table("document")
    with op.batch_alter_table("address", schema=None) as batch_op:
        batch_op.drop_index("ix_address_customer_key")
        batch_op.drop_index(batch_op.f("ix_address_address_lower"))

    op.drop_table("address")
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_customer_id"))

    op.drop_table("service")
    op.drop_table("definition")
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_customer_id"))

    op.drop_table("contact")
    op.drop_table("suppression")
    op.drop_table("smtp_profile")
    op.drop_table("organisation")
    op.drop_table("customer")
    op.drop_table("billing_method")
