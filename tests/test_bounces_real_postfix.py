"""Postfix's own DSNs read back (fixtures/real_mta.py: a real Postfix of the test's own).

Messages go out through Postfix's submission port (STARTTLS, AUTH) with a VERP
envelope sender, as msgrun sends them with a profile's bounce_address; Postfix
accepts every address of local.example and then bounces the users that do not
exist with a DSN of its own, to the VERP address, which it delivers into the
bounces Maildir. `msgrun bounces read` of that Maildir makes exactly those
recipients hard bounces: by Message-ID, and by VERP when the message had none
of msgrun's. In CI these run or fail; elsewhere they are skipped, saying why,
when Postfix and Dovecot cannot be had.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core.bounces import verp_address, verp_token
from core.storage import Database
from core.storage.models import Recipient
from tests.bounce_support import NOW
from tests.delivery_support import document, new_run
from tui import cli

real_mta = pytest.importorskip("fixtures.real_mta")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
BOUNCES = "bounces@mail.example"


@pytest.fixture(scope="module")
def mta() -> Iterator[object]:
    reason = real_mta.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required in CI)")
        pytest.skip(reason)
    with real_mta.RealMta(mailboxes=("alice", "bob", "bounces")) as server:
        yield server


def submit(mta: object, sender: str, recipient: str, message_id: str | None) -> None:
    context = ssl.create_default_context(cafile=str(mta.ca_file))  # type: ignore[attr-defined]
    headers = f"From: Example Billing <{mta.user}>\r\nTo: {recipient}\r\n"  # type: ignore[attr-defined]
    if message_id:
        headers += f"Message-ID: {message_id}\r\n"
    body = headers + "Subject: Invoice\r\n\r\nYour invoice.\r\n"
    with smtplib.SMTP("127.0.0.1", mta.ports["submission"], timeout=30) as smtp:  # type: ignore[attr-defined]
        smtp.starttls(context=context)
        smtp.login(mta.user, mta.password)  # type: ignore[attr-defined]
        smtp.sendmail(sender, [recipient], body.encode())


def test_postfix_dsns_become_hard_bounces_of_exactly_the_right_recipients(
        mta: object, sqlite_db: Database, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    addresses = ["alice@mail.example", "ghost1@local.example", "bob@mail.example",
                 "ghost2@local.example"]
    doc = document(len(addresses), port=2525)
    for customer, address in zip(doc["customers"], addresses, strict=True):
        customer["contacts"][0]["addresses"][0]["address"] = address
    run_id = new_run(sqlite_db, doc)
    with sqlite_db.session() as session:
        session.execute(update(Recipient).where(Recipient.run_id == run_id)
                        .values(state="sent", sent_at=NOW, updated_at=NOW))
        rows = list(session.scalars(select(Recipient).where(Recipient.run_id == run_id)
                                    .order_by(Recipient.position)))
    by_address = {r.address: r for r in rows}
    for row in rows:
        sender = verp_address(BOUNCES, verp_token(run_id, row.position))
        # ghost2's message carries a Message-ID msgrun does not know: only VERP names it.
        message_id = row.message_id if row.address != "ghost2@local.example" else (
            "<foreign-1@elsewhere.example>")
        submit(mta, sender, row.address or "", message_id)

    box = mta.mailbox(BOUNCES)  # type: ignore[attr-defined]
    mta.wait_for(lambda: len(mta.delivered(BOUNCES)) >= 2, "two DSNs from Postfix")  # type: ignore[attr-defined]
    assert len(mta.delivered("alice@mail.example")) == 1  # type: ignore[attr-defined]

    url = f"sqlite:///{tmp_path / 'msgrun.db'}"
    code = cli.main(["bounces", "read", str(box), "--json", "--db", url])
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert code == 0
    assert (summary["bounces"], summary["hard"], summary["unmatched"]) == (2, 2, 0)
    got = sorted((r["address"], r["status"], r["matched_by"], r["customer"])
                 for r in summary["reports"])
    assert got == [
        ("ghost1@local.example", "5.1.1", "message_id",
         by_address["ghost1@local.example"].customer_id),
        ("ghost2@local.example", "5.1.1", "verp",
         by_address["ghost2@local.example"].customer_id),
    ]
    # Read again: nothing changes; the DSNs were moved to cur/ and marked seen.
    assert cli.main(["bounces", "read", str(box), "--json", "--db", url]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["already_read"], again["bounces"]) == (2, 0)
    assert [p for p in (box / "new").iterdir()] == []
    assert all(p.name.endswith(":2,S") for p in (box / "cur").iterdir())
