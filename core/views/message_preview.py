"""A recipient's message as msgrun builds it, for the console's message view."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from core.delivery.queries import run_settings
from core.messages.compose import compose_message, message_contexts
from core.messages.due import Due
from core.run_info import UnknownRun
from core.storage.database import Database
from core.storage.models import Recipient, table_of


def recipient_message(database: Database, run_id: int, position: int) -> bytes:
    """The bytes msgrun sends (or would send) to one recipient of a run."""
    recipient = table_of(Recipient)
    with database.connect() as connection:
        row = connection.execute(
            select(recipient).where(recipient.c.run_id == run_id, recipient.c.position == position)
        ).first()
        if row is None:
            raise UnknownRun(f"run {run_id} has no recipient {position + 1}")
        if row.address is None or row.message_id is None:
            raise ValueError("this recipient has no address, so no message is built for it")
        due = Due(
            id=row.id,
            state=row.state,
            position=row.position,
            customer_id=row.customer_id,
            contact_id=row.contact_id,
            address=row.address,
            document_id=row.document_id,
            offset_days=row.offset_days,
            message_id=row.message_id,
            attempts=row.attempts,
        )
        profile, templates = run_settings(connection, run_id)
        # The files are not read again for a preview: what was attached is the
        # recipient's recorded evidence (the view lists it), not the files as they are now.
        templates = replace(templates, attacher=None)
        context = message_contexts(connection, [due])
        moment = row.sent_at or row.updated_at
        assert moment is not None
        envelope = compose_message(run_id, due, profile, templates, context, moment)
    data: bytes = envelope.data
    return data
