"""Postfix's own DSNs read back (fixtures/real_mta.py: a real Postfix of the test's own).

Messages go out through Postfix's submission port (STARTTLS, AUTH) with a VERP
envelope sender, as msgrun sends them with a profile's bounce_address; Postfix
accepts every address of local.example and then bounces the users that do not
exist with a DSN of its own, to the VERP address, which it delivers into the
bounces Maildir. `msgrun bounces read` of that Maildir makes exactly those
recipients hard bounces: by Message-ID, and by VERP when the message had none
of msgrun's. The same DSNs, sent to a VERP address of `pipe.example`, go through
Postfix's own pipe(8) transport into `msgrun bounces read -` (the README's
master.cf lines); a database that cannot be reached exits 75, and Postfix keeps
the DSN and delivers it once the database is back. In CI these run or fail;
elsewhere they are skipped, saying why, when Postfix and Dovecot cannot be had.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import ssl
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core.bounces.queries import list_outcomes, list_suppressions
from core.messages.verp import verp_address, verp_token
from core.storage import Database, open_database
from core.storage.models import Recipient
from fixtures.smtp_servers import free_port
from tests.bounce_support import NOW
from tests.delivery_support import document, new_run
from tests.nobody import msgrun_nobody_can_run
from tui import cli

real_mta = pytest.importorskip("fixtures.real_mta")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
BOUNCES = "bounces@mail.example"
# Reports to bounces(+TOKEN)@pipe.example go to msgrun through Postfix's pipe(8)
# transport, one recipient per delivery (${recipient} is then that one address).
PIPED = "bounces@pipe.example"
PIPE_MAIN = """\
transport_maps = inline:{ bounces@pipe.example=msgrun: }
msgrun_destination_recipient_limit = 1
"""
MSGRUN = Path(sys.executable).with_name("msgrun")
NOBODY = 65534
CLOSED = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"


def pipe_service(url: str, msgrun: Path = MSGRUN) -> str:
    """The master.cf service of the README, its database ``url``."""
    return (
        "msgrun    unix  -       n       n       -       -       pipe\n"
        f"  flags=Rq user=nobody argv={msgrun} bounces read - --envelope-to ${{recipient}} "
        f"--db {url}\n"
    )


@pytest.fixture(scope="module")
def msgrun_for_nobody() -> Iterator[Path]:
    with msgrun_nobody_can_run() as command:
        yield command


@pytest.fixture(scope="module")
def mta(msgrun_for_nobody: Path) -> Iterator[object]:
    reason = real_mta.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required in CI)")
        pytest.skip(reason)
    with real_mta.RealMta(
        mailboxes=("alice", "bob", "bounces"),
        main_extra=PIPE_MAIN,
        master_extra=pipe_service(CLOSED),
    ) as server:
        server.msgrun = msgrun_for_nobody  # wherever the checkout is (tests/nobody.py)
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
    mta: object, sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    addresses = [
        "alice@mail.example",
        "ghost1@local.example",
        "bob@mail.example",
        "ghost2@local.example",
    ]
    doc = document(len(addresses), port=2525)
    for customer, address in zip(doc["customers"], addresses, strict=True):
        customer["contacts"][0]["addresses"][0]["address"] = address
    run_id = new_run(sqlite_db, doc)
    with sqlite_db.session() as session:
        session.execute(
            update(Recipient)
            .where(Recipient.run_id == run_id)
            .values(state="sent", sent_at=NOW, updated_at=NOW)
        )
        rows = list(
            session.scalars(
                select(Recipient).where(Recipient.run_id == run_id).order_by(Recipient.position)
            )
        )
    by_address = {r.address: r for r in rows}
    for row in rows:
        sender = verp_address(BOUNCES, verp_token(run_id, row.position))
        # ghost2's message carries a Message-ID msgrun does not know: only VERP names it.
        message_id = (
            row.message_id
            if row.address != "ghost2@local.example"
            else ("<foreign-1@elsewhere.example>")
        )
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
    got = sorted(
        (r["address"], r["status"], r["matched_by"], r["customer"]) for r in summary["reports"]
    )
    assert got == [
        (
            "ghost1@local.example",
            "5.1.1",
            "message_id",
            by_address["ghost1@local.example"].customer_id,
        ),
        ("ghost2@local.example", "5.1.1", "verp", by_address["ghost2@local.example"].customer_id),
    ]
    # Read again: nothing changes; the DSNs were moved to cur/ and marked seen.
    assert cli.main(["bounces", "read", str(box), "--json", "--db", url]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["already_read"], again["bounces"]) == (2, 0)
    assert [p for p in (box / "new").iterdir()] == []
    assert all(p.name.endswith(":2,S") for p in (box / "cur").iterdir())


# -- bounces read - driven by Postfix's own pipe(8) transport ---------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def pipe_db(request: pytest.FixtureRequest, mta: object) -> Iterator[tuple[Database, str]]:
    """A database the pipe's user (nobody) can write: SQLite in a folder of nobody's under
    the MTA's own (the test's tmp_path is root's alone), or the PostgreSQL test database."""
    if request.param == "postgresql":
        database: Database = request.getfixturevalue("postgresql_db")
        yield database, database.url.render_as_string(hide_password=False)
        return
    folder = mta.root / f"pipe-{uuid.uuid4().hex[:8]}"  # type: ignore[attr-defined]
    folder.mkdir()
    url = f"sqlite:///{folder / 'msgrun.db'}"
    database = open_database(url)
    database.dispose()
    owned_by(folder, NOBODY)
    yield database, url
    database.dispose()
    shutil.rmtree(folder, ignore_errors=True)


def sent_to(db: Database, addresses: list[str]) -> tuple[int, dict[str, Recipient]]:
    doc = document(len(addresses), port=2525)
    for customer, address in zip(doc["customers"], addresses, strict=True):
        customer["contacts"][0]["addresses"][0]["address"] = address
    run_id = new_run(db, doc)
    with db.session() as session:
        session.execute(
            update(Recipient)
            .where(Recipient.run_id == run_id)
            .values(state="sent", sent_at=NOW, updated_at=NOW)
        )
        rows = list(
            session.scalars(
                select(Recipient).where(Recipient.run_id == run_id).order_by(Recipient.position)
            )
        )
    return run_id, {r.address or "": r for r in rows}


def test_postfix_pipes_its_dsns_into_msgrun_and_they_become_hard_bounces(
    mta: object, pipe_db: tuple[Database, str]
) -> None:
    db, url = pipe_db
    mta.write_master(pipe_service(url, mta.msgrun))  # type: ignore[attr-defined]
    mark = mta.log_mark()  # type: ignore[attr-defined]
    run_id, rows = sent_to(
        db, ["ghost3@local.example", "alice@mail.example", "ghost4@local.example"]
    )
    for address, row in rows.items():
        sender = verp_address(PIPED, verp_token(run_id, row.position))
        # ghost4's message carries a Message-ID msgrun does not know: only VERP names it.
        message_id = (
            row.message_id
            if address != "ghost4@local.example"
            else ("<foreign-2@elsewhere.example>")
        )
        submit(mta, sender, address, message_id)
    mta.wait_for(lambda: len(list_outcomes(db)) >= 2, "two DSNs piped into msgrun", 90)  # type: ignore[attr-defined]
    got = sorted(
        (o.address, o.type, o.bounce_class, o.status, o.matched_by, o.run, o.customer)
        for o in list_outcomes(db)
    )
    assert got == [
        (
            "ghost3@local.example",
            "bounce",
            "hard",
            "5.1.1",
            "message_id",
            run_id,
            rows["ghost3@local.example"].customer_id,
        ),
        (
            "ghost4@local.example",
            "bounce",
            "hard",
            "5.1.1",
            "verp",
            run_id,
            rows["ghost4@local.example"].customer_id,
        ),
    ]
    assert sorted((s.address, s.reason) for s in list_suppressions(db)) == [
        ("ghost3@local.example", "hard_bounce"),
        ("ghost4@local.example", "hard_bounce"),
    ]

    # Postfix logs each DSN delivered through the pipe once msgrun has exited 0, with
    # msgrun's summary line.
    def piped() -> list[str]:
        return [
            line
            for line in mta.log_lines("relay=msgrun", since=mark)  # type: ignore[attr-defined]
            if "status=sent (delivered via msgrun service" in line
        ]

    mta.wait_for(lambda: len(piped()) == 2, "two DSNs delivered via msgrun", 90)  # type: ignore[attr-defined]
    assert all("(1 read: 1 bounce (1 hard, 0 soft)" in line for line in piped()), piped()


def test_a_database_failure_exits_75_and_postfix_tries_again(
    mta: object, pipe_db: tuple[Database, str]
) -> None:
    """SQLite: a database the pipe's user may not write (root's); PostgreSQL: a server that
    does not answer. msgrun exits 75, Postfix keeps the DSN; once the database is right,
    Postfix's next try delivers it and it is read."""
    db, url = pipe_db
    run_id, rows = sent_to(db, ["ghost5@local.example"])
    row = rows["ghost5@local.example"]
    verp = verp_address(PIPED, verp_token(run_id, row.position))
    mark = mta.log_mark()  # type: ignore[attr-defined]
    if db.dialect == "sqlite":
        folder = Path(url.removeprefix("sqlite:///")).parent
        owned_by(folder, 0)
        failing, words = url, "cannot store the report from -: attempt to write a readonly"
    else:
        failing, words = CLOSED, "cannot open"
    mta.write_master(pipe_service(failing, mta.msgrun))  # type: ignore[attr-defined]
    submit(mta, verp, "ghost5@local.example", row.message_id)

    def deferred() -> list[str]:
        return [
            line
            for line in mta.log_lines(f"to=<{verp}>", since=mark)  # type: ignore[attr-defined]
            if "relay=msgrun" in line and "status=deferred" in line
        ]

    mta.wait_for(lambda: deferred(), "the DSN deferred by Postfix (msgrun exited 75)", 90)  # type: ignore[attr-defined]
    assert "temporary failure" in deferred()[0] and words in deferred()[0], deferred()
    assert "[SQL" not in deferred()[0]
    assert list_outcomes(db) == []
    # The database is right again: Postfix delivers the DSN it kept, and it is read.
    if db.dialect == "sqlite":
        owned_by(folder, NOBODY)
    mta.write_master(pipe_service(url, mta.msgrun))  # type: ignore[attr-defined]
    mta.flush()  # type: ignore[attr-defined]
    mta.wait_for(lambda: len(list_outcomes(db)) >= 1, "the kept DSN piped again", 90)  # type: ignore[attr-defined]
    [outcome] = list_outcomes(db)
    assert (outcome.address, outcome.bounce_class, outcome.status, outcome.customer) == (
        "ghost5@local.example",
        "hard",
        "5.1.1",
        row.customer_id,
    )


def owned_by(folder: Path, uid: int) -> None:
    for path in [folder, *folder.iterdir()]:
        os.chown(path, uid, uid)
