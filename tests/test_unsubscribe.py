"""Unsubscribe (inbox.md): tokens, the List-Unsubscribe headers by kind, the one-click
endpoint driven by a real HTTP client, what an unsubscribe turns off (and what it does
not), the planner's reason, and `unsubscribes list` / `lift`."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.clock import SystemClock, parse_instant
from core.delivery.starting import create_run
from core.planner.plan import make_plan
from core.storage import Database
from core.storage.models import Recipient, table_of
from core.unsubscribe.tokens import database_secret, make_token, read_token
from fixtures.smtp_servers import SmtpServer, free_port
from tests.conftest import load, load_ok, url_of
from tests.delivery_support import AT, deliver_now, document

pytestmark = pytest.mark.timeout(120)
URL = "https://mail.bluelagoonpools.example.com/u/"
ADDRESS = "unsubscribe@mail.bluelagoonpools.example.com"


def broadcast_document(port: int = 2525, count: int = 2) -> dict[str, Any]:
    doc = document(count, port)
    doc["organisation"]["unsubscribe"] = {"url": URL, "address": ADDRESS}
    doc["definitions"].append(
        {
            "id": "news",
            "name": "Pool news",
            "kind": "broadcast",
            "address_key": "billing",
            "smtp_profile": "main",
            "trigger": {"type": "manual"},
            "dedup": "none",
            "template": {
                "subject": "Pool news",
                "text": "News.\n\nUnsubscribe: {{ unsubscribe_url }}\n",
            },
        }
    )
    return doc


def sent_broadcast(db: Database, count: int = 2) -> tuple[int, list[bytes]]:
    with SmtpServer() as server:
        load_ok(db, broadcast_document(server.port, count))
        run_id = create_run(db, "news", parse_instant(AT), SystemClock())
        assert deliver_now(db, run_id).state == "completed"
    return run_id, [m.data for m in sorted(server.messages(), key=lambda m: m.recipient)]


def token_of(message: bytes) -> str:
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    line = next(x for x in head.split("\r\n") if x.startswith("List-Unsubscribe: "))
    return line.rsplit("/u/", 1)[1].rstrip(">")


# -- tokens -----------------------------------------------------------------------------


def test_a_token_names_its_run_and_recipient_in_at_most_40_lowercase_letters_and_digits() -> None:
    for run_id, position in ((1, 0), (7, 12345), (2**40, 2**40)):
        token = make_token("s" * 64, run_id, position)
        assert len(token) <= 40 and token.isalnum() and token == token.lower()
        assert read_token("s" * 64, token) == (run_id, position)
        assert read_token("s" * 64, token.upper()) == (run_id, position)
    token = make_token("s" * 64, 7, 3)
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert read_token("s" * 64, forged) is None
    assert read_token("other", token) is None
    assert read_token("s" * 64, make_token("s" * 64, 7, 4)[:-16] + token[-16:]) is None


# -- import -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (("news", "unsubscribe", False), "definitions[1].unsubscribe", "always offer"),
        (("inv", "unsubscribe", True), "definitions[0].unsubscribe", "cannot opt out"),
    ],
)
def test_import_refuses_an_unsubscribe_a_kind_cannot_have(
    db: Database, change: tuple[str, str, bool], path: str, message: str
) -> None:
    doc = broadcast_document()
    definition = next(d for d in doc["definitions"] if d["id"] == change[0])
    definition[change[1]] = change[2]
    outcome = load(db, doc)
    assert any(p.path == path and message in p.message for p in outcome.problems)


def test_import_refuses_a_long_local_part_and_a_url_that_is_not_https(db: Database) -> None:
    doc = broadcast_document()
    doc["organisation"]["unsubscribe"] = {
        "url": "http://example.org/u/",
        "address": "a-very-long-unsubscribe-address@example.org",
    }
    paths = {p.path for p in load(db, doc).problems}
    assert paths == {"organisation.unsubscribe.url", "organisation.unsubscribe.address"}
    doc["organisation"]["unsubscribe"] = {"url": URL, "address": '"un sub"@example.org'}
    (problem,) = load(db, doc).problems
    assert str(problem).startswith(
        "organisation.unsubscribe.address: '\"un sub\"@example.org' is not a valid email address"
    )


# -- headers ------------------------------------------------------------------------------


def test_a_broadcast_carries_both_forms_and_one_click_and_an_invoice_neither(
    db: Database,
) -> None:
    run_id, messages = sent_broadcast(db)
    head = messages[0].split(b"\r\n\r\n", 1)[0].decode()
    token = token_of(messages[0])
    with db.connect() as connection:
        secret = database_secret(connection)
    assert read_token(secret, token) is not None and read_token(secret, token)[0] == run_id  # type: ignore[index]
    assert (
        f"List-Unsubscribe: <mailto:unsubscribe+{token}@mail.bluelagoonpools.example.com>, "
        f"<{URL}{token}>" in head
    )
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in head
    assert "Precedence: bulk" in head
    assert f"Unsubscribe: {URL}{token}".encode() in messages[0]
    assert token_of(messages[1]) != token
    with SmtpServer() as server:
        load_ok(db, broadcast_document(server.port))
        invoice_run = create_run(db, "inv", parse_instant(AT), SystemClock())
        deliver_now(db, invoice_run)
    assert all(b"List-Unsubscribe" not in m.data for m in server.messages())


# -- the endpoint, with a real HTTP client -------------------------------------------------


class Served:
    def __init__(self, db: Database) -> None:
        self.port = free_port()
        exe = str(Path(sys.executable).with_name("msgrun"))
        self.process = subprocess.Popen(
            [exe, "--db", url_of(db), "unsubscribe", "serve", "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "listening on" in line, self.process.stderr.read() if self.process.stderr else ""

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": content_type} if content_type else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        connection.close()
        return response.status, text


def records(db: Database) -> list[dict[str, Any]]:
    from core.unsubscribe.records import listed

    with db.connect() as connection:
        return listed(connection)


def test_the_endpoint_unsubscribes_on_one_click_post_only_and_ends_on_sigterm(
    db: Database,
) -> None:
    run_id, messages = sent_broadcast(db)
    token = token_of(messages[0])
    server = Served(db)
    try:
        status, page = server.request("GET", f"/u/{token}")
        assert status == 200 and "Test Pools" in page and "news and offers" in page
        assert "p0@example.org" not in page and "Person 0" not in page
        assert 'name="List-Unsubscribe" value="One-Click"' in page
        assert records(db) == []  # a GET never unsubscribes
        forged = token[:-1] + ("a" if token[-1] != "a" else "b")
        assert server.request("GET", f"/u/{forged}")[0] == 404
        assert (
            server.request(
                "POST",
                f"/u/{forged}",
                b"List-Unsubscribe=One-Click",
                "application/x-www-form-urlencoded",
            )[0]
            == 404
        )
        big = b"List-Unsubscribe=One-Click&x=" + b"a" * 5000
        assert (
            server.request("POST", f"/u/{token}", big, "application/x-www-form-urlencoded")[0]
            == 413
        )
        assert (
            server.request("POST", f"/u/{token}", b"nothing", "application/x-www-form-urlencoded")[
                0
            ]
            == 400
        )
        assert server.request("POST", f"/u/{token}", b"{}", "application/json")[0] == 415
        assert records(db) == []
        multipart = (
            b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            b"One-Click\r\n--b--\r\n"
        )
        status, page = server.request(
            "POST", f"/u/{token}", multipart, "multipart/form-data; boundary=b"
        )
        assert status == 200 and "p0@example.org" not in page
        again = server.request(
            "POST",
            f"/u/{token.upper()}",
            b"List-Unsubscribe=One-Click",
            "application/x-www-form-urlencoded",
        )
        assert again[0] == 200
    finally:
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=30)
    assert code == 0
    (found,) = records(db)
    assert found["address"] == "p0@example.org" and found["preference"] == "exclude_from_broadcasts"
    assert found["how"] == "one_click" and found["run"] == run_id and found["kind"] == "broadcast"


def test_serve_refuses_to_start_without_an_unsubscribe_url(db: Database) -> None:
    load_ok(db, document(1, 2525))
    exe = str(Path(sys.executable).with_name("msgrun"))
    done = subprocess.run(
        [exe, "--db", url_of(db), "unsubscribe", "serve", "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "no unsubscribe.url" in done.stderr


# -- what an unsubscribe turns off -----------------------------------------------------------


def excluded(db: Database, definition: str) -> dict[str, tuple[str, str]]:
    plan = make_plan(db, definition, parse_instant(AT), environ={})
    found = {}
    for candidate in plan.candidates:
        if candidate.reasons:
            found[candidate.address] = (candidate.reasons[0].code, candidate.reasons[0].detail)
    return found


def test_an_unsubscribe_turns_off_that_kinds_preference_only_even_after_an_import(
    db: Database,
) -> None:
    run_id, messages = sent_broadcast(db)
    server = Served(db)
    try:
        assert (
            server.request(
                "POST",
                f"/u/{token_of(messages[0])}",
                b"List-Unsubscribe=One-Click",
                "application/x-www-form-urlencoded",
            )[0]
            == 200
        )
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
    load_ok(db, broadcast_document())  # the billing system's data again
    code, detail = excluded(db, "news")["p0@example.org"]
    assert code == "contact_preference_off"
    assert detail.startswith("exclude_from_broadcasts: unsubscribed on ")
    assert detail.endswith(f" UTC (one-click, from run {run_id})")
    assert "p1@example.org" not in excluded(db, "news")
    assert "p0@example.org" not in excluded(db, "inv")  # the invoices still go
    exe = str(Path(sys.executable).with_name("msgrun"))
    listed = subprocess.run(
        [exe, "--db", url_of(db), "unsubscribes", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    (entry,) = json.loads(listed.stdout)
    assert list(entry) == [
        "address",
        "customer",
        "contact",
        "preference",
        "kind",
        "at",
        "how",
        "run",
        "recipient",
    ]
    wrong_kind = subprocess.run(
        [
            exe,
            "--db",
            url_of(db),
            "unsubscribes",
            "lift",
            "p0@example.org",
            "--definition-kind",
            "service_reminder",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        wrong_kind.returncode == 2
        and "no unsubscribe of kind service_reminder" in wrong_kind.stderr
    )
    lifted = subprocess.run(
        [exe, "--db", url_of(db), "unsubscribes", "lift", "P0@example.org"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lifted.returncode == 0 and "1 unsubscribe lifted" in lifted.stdout
    assert "p0@example.org" not in excluded(db, "news")
    again = subprocess.run(
        [exe, "--db", url_of(db), "unsubscribes", "lift", "p0@example.org"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2


def test_the_plan_warns_when_an_unsubscribe_has_nowhere_to_go_or_no_link(db: Database) -> None:
    doc = broadcast_document()
    load_ok(db, doc)
    assert not [
        w
        for w in make_plan(db, "news", parse_instant(AT), environ={}).warnings
        if "unsubscribe" in w
    ]
    doc["definitions"][1]["template"]["text"] = "News without a link."
    load_ok(db, doc)
    (warning,) = [
        w
        for w in make_plan(db, "news", parse_instant(AT), environ={}).warnings
        if "unsubscribe" in w
    ]
    assert warning.startswith("the templates do not use unsubscribe_url")
    del doc["organisation"]["unsubscribe"]
    load_ok(db, doc)
    (warning,) = [
        w
        for w in make_plan(db, "news", parse_instant(AT), environ={}).warnings
        if "unsubscribe" in w
    ]
    assert warning.startswith("broadcast messages without an unsubscribe: Gmail and Yahoo")
    assert not [
        w
        for w in make_plan(db, "inv", parse_instant(AT), environ={}).warnings
        if "unsubscribe" in w
    ]


def test_the_endpoint_answers_503_when_its_database_fails_and_records_nothing(
    sqlite_db: Database,
) -> None:
    from sqlalchemy import text

    _, messages = sent_broadcast(sqlite_db, 1)
    server = Served(sqlite_db)
    try:
        with sqlite_db.connect() as connection:  # the records' table gone from under it
            connection.execute(text("ALTER TABLE unsubscribe RENAME TO unsubscribe_away"))
        status, page = server.request(
            "POST",
            f"/u/{token_of(messages[0])}",
            b"List-Unsubscribe=One-Click",
            "application/x-www-form-urlencoded",
        )
        assert status == 503 and "p0@example.org" not in page
        with sqlite_db.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM unsubscribe_away")).scalar() == 0
            connection.execute(text("ALTER TABLE unsubscribe_away RENAME TO unsubscribe"))
        assert server.request("GET", f"/u/{token_of(messages[0])}")[0] == 200  # still serving
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
    assert records(sqlite_db) == []


def test_replacing_the_organisation_forgets_its_unsubscribes_and_keeps_the_secret(
    db: Database,
) -> None:
    from core.interchange import import_text
    from core.unsubscribe.records import record, target_of

    _, messages = sent_broadcast(db, 1)
    with db.connect() as connection:
        secret = database_secret(connection)
        target = target_of(connection, token_of(messages[0]))
        assert target is not None
        assert record(connection, target, "one_click", parse_instant(AT))
        assert record(connection, target, "one_click", parse_instant(AT))  # twice: one record
    assert len(records(db)) == 1
    other = broadcast_document()
    other["organisation"]["name"] = "Another Pools"
    assert import_text(db, json.dumps(other), replace_organisation=True).ok
    assert records(db) == []
    with db.connect() as connection:
        assert database_secret(connection) == secret


# -- bounces read: a request mailed to the unsubscribe address, and ARF opt-out ------------


def mailed_request(to: str, number: int) -> bytes:
    return (
        f"From: Ana <p0@example.org>\r\nTo: {to}\r\nSubject: unsubscribe\r\n"
        f"Message-ID: <req-{number}@example.org>\r\nDate: Mon, 23 Nov 2026 11:00:00 +0000\r\n\r\n"
        "unsubscribe\r\n"
    ).encode()


def opt_out_report(message_id: str) -> bytes:
    from tests.bounce_support import arf_abuse

    return (
        arf_abuse(message_id, "p0@example.org")
        .replace(b"Feedback-Type: abuse", b"Feedback-Type: opt-out")
        .replace(b"feedback-type=abuse", b"feedback-type=opt-out")
    )


def read_mail(db: Database, raw: bytes, *extra: str) -> dict[str, Any]:
    exe = str(Path(sys.executable).with_name("msgrun"))
    done = subprocess.run(
        [exe, "--db", url_of(db), "bounces", "read", "-", "--json", *extra],
        input=raw,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


DOMAIN = "mail.bluelagoonpools.example.com"


def mailed_with_token(db: Database, token: str, number: int) -> dict[str, Any]:
    """A request mailed to the unsubscribe address with ``token``, read (its envelope)."""
    return read_mail(
        db,
        mailed_request("someone@example.org", number),
        "--envelope-to",
        f"unsubscribe+{token}@{DOMAIN}",
    )


def message_ids(db: Database) -> dict[str, str]:
    """Each recipient's Message-ID, by address."""
    with db.connect() as connection:
        table = table_of(Recipient)
        return dict(connection.execute(select(table.c.address, table.c.message_id)).all())


def test_a_request_mailed_to_the_unsubscribe_address_unsubscribes_once(db: Database) -> None:
    run_id, messages = sent_broadcast(db)
    token = token_of(messages[0])
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    refused = read_mail(db, mailed_request(f"unsubscribe+{forged}@{DOMAIN}", 1))
    assert refused["not_reports"] == 1 and refused["unsubscribed"] == 0 and records(db) == []
    found = mailed_with_token(db, token, 2)
    assert found["unsubscribed"] == 1
    assert [r["kind"] for r in found["reports"]] == ["unsubscribe"]
    again = mailed_with_token(db, token, 2)
    assert again["already_read"] == 1
    (entry,) = records(db)
    assert (
        entry["how"] == "mailto" and entry["run"] == run_id and entry["address"] == "p0@example.org"
    )


def test_an_opt_out_feedback_report_unsubscribes_and_one_about_an_invoice_is_ignored(
    db: Database,
) -> None:
    sent_broadcast(db)
    ids = message_ids(db)
    report = read_mail(db, opt_out_report(ids["p0@example.org"]))
    assert report["unsubscribed"] == 1 and report["reports"][0]["kind"] == "unsubscribe"
    (entry,) = records(db)
    assert entry["how"] == "feedback_report" and entry["preference"] == "exclude_from_broadcasts"
    with SmtpServer() as server:
        load_ok(db, broadcast_document(server.port))
        invoice_run = create_run(db, "inv", parse_instant(AT), SystemClock())
        deliver_now(db, invoice_run)
    with db.connect() as connection:
        table = table_of(Recipient)
        invoice_id = connection.execute(
            select(table.c.message_id).where(table.c.run_id == invoice_run).limit(1)
        ).scalar_one()
    second = opt_out_report(invoice_id).replace(b"<fbl-20261128-0001@", b"<fbl-20261128-0002@")
    ignored = read_mail(db, second)
    assert ignored["ignored"] == 1 and ignored["unsubscribed"] == 0
    assert len(records(db)) == 1


def cli(db: Database, *words: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("msgrun"))
    return subprocess.run(
        [exe, "--db", url_of(db), *words], capture_output=True, text=True, timeout=60
    )


def test_an_unsubscribe_read_from_mail_is_no_outcome_of_its_recipient(db: Database) -> None:
    """A mailed request and an ARF opt-out are unsubscribes, not outcomes (after-sending.md:
    bounce, complaint or delay): run show, export, follow-up, the run's screen and why
    read on as if the reports were not there — they once stopped at ``KeyError``."""
    from core.views.runs import run_window

    run_id, messages = sent_broadcast(db)
    ids = message_ids(db)
    assert read_mail(db, opt_out_report(ids["p0@example.org"]))["unsubscribed"] == 1
    mailed = mailed_with_token(db, token_of(messages[1]), 3)
    assert mailed["unsubscribed"] == 1
    assert len(records(db)) == 2

    shown = cli(db, "run", "show", str(run_id), "--json")
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["outcomes"] == {"bounce_hard": 0, "bounce_soft": 0, "complaint": 0, "delay": 0}
    assert [r["outcome"] for r in run["recipients"]] == [None, None]
    exported = cli(db, "run", "export", str(run_id), "--format", "json")
    assert exported.returncode == 0, exported.stderr
    assert [r["outcome"] for r in json.loads(exported.stdout)] == [None, None]
    csv_text = cli(db, "run", "export", str(run_id))
    assert csv_text.returncode == 0 and len(csv_text.stdout.strip().splitlines()) == 3
    why = cli(db, "why", "C00000", "--json")
    assert why.returncode == 0, why.stderr
    (delivery,) = json.loads(why.stdout)["deliveries"]
    assert delivery["run"] == run_id and delivery["outcomes"] == []
    window = run_window(db, run_id)
    assert window.outcome_counts == run["outcomes"] and window.outcomes == {}
    followed = cli(db, "run", "follow-up", str(run_id), "--outcome", "bounce", "--detach")
    assert followed.returncode in (0, 2), followed.stderr  # nothing to follow up: said, not a crash
    assert "internal error" not in followed.stderr + followed.stdout
