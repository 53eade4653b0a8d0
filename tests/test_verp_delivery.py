"""VERP: with a bounce address, each message's envelope sender names its recipient,
and a report delivered to that address is tied back to the recipient."""

from __future__ import annotations

from email import message_from_bytes

import pytest
from sqlalchemy import select

from core.bounces.sources import SourceMessage
from core.bounces.store import ReadSummary, record_message
from core.messages.verp import parse_verp_token, verp_address, verp_token
from core.storage import Database
from core.storage.models import Recipient, SmtpProfile, table_of
from fixtures.smtp_servers import SmtpServer
from tests.bounce_support import NOW, postfix_dsn
from tests.delivery_support import deliver_now, document, new_run

BOUNCES = "bounces@mail.example.com"
pytestmark = pytest.mark.usefixtures("sending_ways")


def recipients(db: Database, run_id: int) -> dict[str, tuple[int, str]]:
    """address → (position, customer) of the run's recipients."""
    table = table_of(Recipient)
    with db.connect() as connection:
        rows = connection.execute(
            select(table.c.address, table.c.position, table.c.customer_id).where(
                table.c.run_id == run_id
            )
        ).all()
    return {r.address: (r.position, r.customer_id) for r in rows}


def from_address(db: Database) -> str:
    with db.connect() as connection:
        return str(connection.execute(select(table_of(SmtpProfile).c.from_address)).scalar_one())


def test_with_a_bounce_address_mail_from_is_the_verp_address_of_each_recipient(
    db: Database,
) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, document(3, server.port, bounce_address=BOUNCES))
        assert deliver_now(db, run_id).state == "completed"
        received = server.messages()
    sender = from_address(db)
    positions = recipients(db, run_id)
    assert len(received) == 3
    for message in received:
        position, _ = positions[message.recipient]
        assert message.mail_from == verp_address(BOUNCES, verp_token(run_id, position))
        token = parse_verp_token(message.mail_from)
        assert token is not None and (token.run_id, token.recipient) == (run_id, position)
        # The From header stays the profile's from_address.
        assert sender in message_from_bytes(message.data)["From"]


def test_a_report_delivered_to_the_verp_address_is_matched_to_its_recipient(
    db: Database,
) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, document(3, server.port, bounce_address=BOUNCES))
        assert deliver_now(db, run_id).state == "completed"
        received = server.messages()
    positions = recipients(db, run_id)
    chosen = received[1]
    _, customer = positions[chosen.recipient]
    # The report neither returns the original Message-ID nor names the address
    # (as some MTAs do): only the envelope sender it came back to names the recipient.
    report = postfix_dsn(None, "someone-else@example.net", delivered_to=chosen.mail_from)
    summary = ReadSummary()
    record_message(db, SourceMessage("m0", report, lambda: None), NOW, summary)
    assert [(r["matched_by"], r["run"], r["customer"]) for r in summary.reports] == [
        ("verp", run_id, customer)
    ]


def test_without_a_bounce_address_mail_from_is_the_from_address(db: Database) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, document(2, server.port))
        assert deliver_now(db, run_id).state == "completed"
        received = server.messages()
    assert {m.mail_from for m in received} == {from_address(db)}
