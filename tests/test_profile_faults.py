"""Faults of the profile end the run, one AUTH per run, the same hello as the test,
and the retry schedule (domain.md: Retries; Faults of the profile; Same conversation)."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from sqlalchemy import select

from core.clock import FixedClock
from core.delivery.retry_policy import (
    DEFAULT_RETRY_AFTER_SECONDS,
    DEFAULT_RETRY_FOR_SECONDS,
    next_attempt,
    retry_delay,
)
from core.delivery.smtp import auth_mechanism, hello_name, profile_refusal
from core.run_info import get_run
from core.smtp_check import check_profile, load_profile
from core.smtp_profiles import ProfileSettings
from core.storage import Database
from core.storage.models import Recipient, table_of
from core.views.run_json import run_json
from fixtures.smtp_servers import Faults, SmtpServer
from tests.conftest import load, load_ok
from tests.delivery_support import assert_counts_match_rows, deliver_now, document, new_run
from tui import cli

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("sending_ways")]
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


# -- the retry schedule, a pure function -------------------------------------------


def test_the_default_schedule_with_jitter() -> None:
    on_time = [retry_delay(n, draw=lambda: 0.5) for n in range(1, 10)]
    assert on_time == [60, 120, 300, 600, 1200, 2400, 3600, 3600, 3600]
    assert retry_delay(1, draw=lambda: 0.0) == pytest.approx(48)  # 20 % early
    assert retry_delay(1, draw=lambda: 1.0) == pytest.approx(72)  # 20 % late
    assert retry_delay(3, [2, 5], draw=lambda: 0.5) == 5  # the last delay repeats
    assert DEFAULT_RETRY_AFTER_SECONDS == (60, 120, 300, 600, 1200, 2400, 3600)
    assert DEFAULT_RETRY_FOR_SECONDS == 86400


def test_retries_end_retry_for_seconds_after_the_first_attempt() -> None:
    def at(seconds: float, attempts: int, **options: object) -> datetime | None:
        return next_attempt(
            first_attempt_at=T0,
            now=T0 + timedelta(seconds=seconds),
            failed_attempts=attempts,
            draw=lambda: 0.5,
            **options,  # type: ignore[arg-type]
        )

    assert at(0, 1) == T0 + timedelta(seconds=60)
    assert at(60, 2) == T0 + timedelta(seconds=180)
    # Within the day: every hour; the last try falls at the end of the day, not after it.
    assert at(80000, 20) == T0 + timedelta(seconds=83600)
    assert at(85000, 21) == T0 + timedelta(seconds=86400)
    assert at(86400, 22) is None
    assert at(90000, 22) is None
    # The profile's own schedule and budget.
    assert at(0, 1, schedule=[2, 5, 10], retry_for_seconds=30) == T0 + timedelta(seconds=2)
    assert at(20, 4, schedule=[2, 5, 10], retry_for_seconds=30) == T0 + timedelta(seconds=30)
    assert at(30, 5, schedule=[2, 5, 10], retry_for_seconds=30) is None


# -- hello and AUTH, the same as the test ---------------------------------------------


def settings(port: int, **changes: object) -> ProfileSettings:
    base = ProfileSettings(
        id="main",
        host="127.0.0.1",
        port=port,
        security="none",
        username=None,
        password_env=None,
        from_address="billing@pools.example.com",
        from_name=None,
        max_connections=1,
        rate_per_second=None,
        tls_verify=True,
        ca_file=None,
        timeout_seconds=3.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_hello_name() -> None:
    profile = settings(25)
    assert hello_name(replace(profile, helo_name="mx.pools.example"), "host.lan") == (
        "mx.pools.example"
    )
    assert hello_name(profile, "build-7.ci.example.net") == "build-7.ci.example.net"
    # No dot (or only localhost's): the sender's domain, which a strict server accepts.
    assert hello_name(profile, "localhost") == "pools.example.com"
    assert hello_name(profile, "buildbox") == "pools.example.com"
    assert hello_name(profile, "localhost.localdomain") == "pools.example.com"


def test_one_mechanism_plain_else_login() -> None:
    assert auth_mechanism("CRAM-MD5 PLAIN LOGIN") == "PLAIN"
    assert auth_mechanism("cram-md5 login") == "LOGIN"
    assert auth_mechanism("CRAM-MD5 XOAUTH2") is None


def test_which_refusals_are_the_profiles() -> None:
    assert profile_refusal(530, "5.7.0 Must issue a STARTTLS command first", before_recipient=True)
    assert profile_refusal(530, "Authentication required", before_recipient=False)
    assert profile_refusal(553, "5.7.1 Sender address rejected", before_recipient=True)
    assert not profile_refusal(554, "5.7.1 Relay access denied", before_recipient=False)
    assert not profile_refusal(550, "5.1.1 no such user", before_recipient=True)
    assert not profile_refusal(450, "4.7.1 too much mail", before_recipient=True)


def test_a_run_and_the_test_say_the_same_hello(db: Database) -> None:
    for helo in ("mx.pools.example", None):
        with SmtpServer() as server:
            doc = document(2, server.port, helo_name=helo)
            run_id = new_run(db, doc)
            assert deliver_now(db, run_id).state == "completed"
            profile = load_profile(db, "main")
            report = asyncio.run(check_profile(profile, {}))
            assert report.ok
        expected = helo or hello_name(profile)
        assert server.helo_names and set(server.helo_names) == {expected}, helo


def test_a_wrong_password_is_tried_once_then_the_right_one_sends(db: Database) -> None:
    with SmtpServer(users={"billing": "right"}) as server:
        doc = document(8, server.port, username="billing", password_env="PW", max_connections=4)
        run_id = new_run(db, doc)
        delivery = deliver_now(db, run_id, environ={"PW": "wrong"})
        assert delivery.state == "failed"
        assert "refused the credentials of billing: 535" in (delivery.error or "")
        # One AUTH for the whole run, whatever the number of connections.
        assert server.auth_attempts == ["billing"]
        assert assert_counts_match_rows(db, run_id)["pending"] == 8
        # The profile fixed (the right password), a restart sends them all.
        assert deliver_now(db, run_id, environ={"PW": "right"}).state == "completed"
    assert len(server.messages()) == 8
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(8)}


def test_a_login_where_no_auth_is_offered_ends_the_run(db: Database) -> None:
    with SmtpServer() as server:
        doc = document(3, server.port, username="billing", password_env="PW")
        run_id = new_run(db, doc)
        delivery = deliver_now(db, run_id, environ={"PW": "x"})
    assert delivery.state == "failed"
    assert "offers no AUTH" in (delivery.error or "")
    assert assert_counts_match_rows(db, run_id)["pending"] == 3
    assert server.messages() == []


def test_authentication_required_at_mail_from_ends_the_run(db: Database) -> None:
    with SmtpServer(users={"billing": "right"}) as server:
        run_id = new_run(db, document(4, server.port))
        delivery = deliver_now(db, run_id)
    assert delivery.state == "failed"
    assert "530 5.7.0 Authentication required" in (delivery.error or "")
    counts = assert_counts_match_rows(db, run_id)
    assert counts["pending"] == 4 and counts["failed"] == 0
    for recipient in run_json(db, run_id)["recipients"]:
        assert recipient["state"] == "pending"


@pytest.fixture(scope="module")
def tls_server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_security_none_on_an_encrypt_only_port(
    db: Database, tls_server_context: ssl.SSLContext
) -> None:
    with SmtpServer(security="starttls", certificate_context=tls_server_context) as server:
        run_id = new_run(db, document(3, server.port, security="none"))
        delivery = deliver_now(db, run_id)
        report = asyncio.run(check_profile(load_profile(db, "main"), {}, to="p0@example.org"))
    assert delivery.state == "failed"
    assert "530 Must issue a STARTTLS command first" in (delivery.error or "")
    assert assert_counts_match_rows(db, run_id)["pending"] == 3
    step = report.smtp_steps[-1]
    assert (step.step, step.ok) == ("mail_from", False)
    assert step.hint is not None and "use security starttls" in step.hint
    assert "sender allowed" not in step.hint


def test_no_auth_before_starttls_suggests_it(
    db: Database, tls_server_context: ssl.SSLContext
) -> None:
    with SmtpServer(security="starttls", certificate_context=tls_server_context) as server:
        profile = settings(server.port, username="billing", password_env="PW")
        report = asyncio.run(check_profile(profile, {"PW": "pw"}))
        run_id = new_run(db, document(2, server.port, username="billing", password_env="PW"))
        delivery = deliver_now(db, run_id, environ={"PW": "pw"})
    step = report.smtp_steps[-1]
    assert (step.step, step.ok, step.detail) == ("auth", False, "the server offers no AUTH")
    assert step.hint is not None and "use security starttls" in step.hint
    assert delivery.state == "failed" and "use security starttls" in (delivery.error or "")
    assert server.auth_attempts == []


def test_starttls_not_offered_ends_the_run(db: Database) -> None:
    with SmtpServer() as server:
        run_id = new_run(db, document(2, server.port, security="starttls"))
        delivery = deliver_now(db, run_id)
    assert delivery.state == "failed" and "does not offer STARTTLS" in (delivery.error or "")
    assert assert_counts_match_rows(db, run_id)["pending"] == 2


# -- postponed mail: waiting, then sent with the same Message-ID --------------------


def test_a_postponed_recipient_waits_then_is_sent_with_the_same_message_id(
    db: Database,
) -> None:
    clock = FixedClock(T0)
    faults = Faults(rcpt={"p1@example.org": ["450 4.2.0 greylisted, come back later"]})
    with SmtpServer(faults=faults) as server:
        run_id = new_run(db, document(3, server.port, retry_after_seconds=[300]), clock=clock)
        delivery = deliver_now(db, run_id, clock)
        assert delivery.state == "waiting"
        assert get_run(db, run_id).state == "waiting"
        recipient = table_of(Recipient)
        with db.connect() as connection:
            row = connection.execute(
                select(recipient).where(recipient.c.address == "p1@example.org")
            ).one()
        assert row.state == "retrying" and row.attempts == 1
        assert row.first_attempt_at == T0
        assert T0 + timedelta(seconds=240) <= row.next_attempt_at <= T0 + timedelta(seconds=360)
        # Not due yet: a restart delivers nothing and the run waits on.
        clock.set(T0 + timedelta(seconds=200))
        assert deliver_now(db, run_id, clock).state == "waiting"
        assert server.count("p1@example.org") == 0
        clock.set(T0 + timedelta(seconds=400))
        assert deliver_now(db, run_id, clock).state == "completed"
    assert server.recipients() == {f"p{i}@example.org": 1 for i in range(3)}
    (message,) = [m for m in server.messages() if m.recipient == "p1@example.org"]
    assert message.message_id == row.message_id


def test_postponed_past_retry_for_seconds_fails(db: Database) -> None:
    clock = FixedClock(T0)
    faults = Faults(rcpt={"p0@example.org": ["451 4.7.1 try later"] * 10})
    with SmtpServer(faults=faults) as server:
        doc = document(1, server.port, retry_after_seconds=[600], retry_for_seconds=1000)
        run_id = new_run(db, doc, clock=clock)
        for minutes, state in ((0, "waiting"), (12, "waiting"), (17, "completed_with_failures")):
            clock.set(T0 + timedelta(minutes=minutes))
            assert deliver_now(db, run_id, clock).state == state, minutes
    (recipient,) = run_json(db, run_id)["recipients"]
    assert (recipient["state"], recipient["attempts"]) == ("failed", 3)
    assert recipient["error"].startswith("gave up after 3 attempts in 1020 s")


# -- the profile's new fields in the import ---------------------------------------


def test_the_new_profile_fields_are_stored(db: Database, minimal: dict[str, Any]) -> None:
    minimal["smtp_profiles"][0].update(
        helo_name="mx.testpools.example.com",
        retry_after_seconds=[30, 90.5, 600],
        retry_for_seconds=7200,
        bounce_address="bounces@testpools.example.com",
    )
    load_ok(db, minimal)
    profile = load_profile(db, "main")
    assert profile.helo_name == "mx.testpools.example.com"
    assert profile.retry_after_seconds == (30, 90.5, 600)
    assert profile.retry_for_seconds == 7200
    assert profile.bounce_address == "bounces@testpools.example.com"
    # Left out (or null): the defaults.
    minimal["smtp_profiles"][0].update(
        helo_name=None, retry_after_seconds=None, retry_for_seconds=None, bounce_address=None
    )
    load_ok(db, minimal)
    profile = load_profile(db, "main")
    assert (profile.helo_name, profile.retry_after_seconds, profile.retry_for_seconds) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("helo_name", "mx pools", "smtp_profiles[0].helo_name: 'mx pools' is not a host name"),
        ("helo_name", "-mx.example", "smtp_profiles[0].helo_name: '-mx.example' is not a host"),
        ("helo_name", 7, "smtp_profiles[0].helo_name: expected a string, got a number"),
        ("retry_after_seconds", [], "smtp_profiles[0].retry_after_seconds: must not be empty"),
        ("retry_after_seconds", 60, "smtp_profiles[0].retry_after_seconds: expected a list"),
        (
            "retry_after_seconds",
            [60, 0],
            "smtp_profiles[0].retry_after_seconds[1]: must be greater than 0, got 0",
        ),
        (
            "retry_after_seconds",
            [60, "2m"],
            "smtp_profiles[0].retry_after_seconds[1]: expected a number of seconds",
        ),
        ("retry_for_seconds", -5, "smtp_profiles[0].retry_for_seconds: must be greater than 0"),
        ("retry_for_seconds", "1d", "smtp_profiles[0].retry_for_seconds: expected a number"),
        (
            "bounce_address",
            "bounces@localhost",
            "smtp_profiles[0].bounce_address: 'bounces@localhost' is not a valid email address",
        ),
        (
            "bounce_address",
            '"b b"@testpools.example.com',
            "smtp_profiles[0].bounce_address: '\"b b\"@testpools.example.com' is not a valid "
            "email address",
        ),
        (  # every message would fail: `local+TOKEN` over 64 characters
            "bounce_address",
            "b" * 31 + "@testpools.example.com",
            "smtp_profiles[0].bounce_address: the local part of 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
            "@testpools.example.com' is over 30 characters (with +TOKEN naming the recipient "
            "it must fit 64)",
        ),
    ],
)
def test_bad_profile_fields_are_named_by_path(
    db: Database, minimal: dict[str, Any], field: str, value: object, problem: str
) -> None:
    minimal["smtp_profiles"][0][field] = value
    outcome = load(db, minimal)
    assert not outcome.ok
    assert any(str(p).startswith(problem) for p in outcome.problems), [
        str(p) for p in outcome.problems
    ]
    assert load_profile_or_none(db) is None  # nothing stored


def load_profile_or_none(db: Database) -> ProfileSettings | None:
    try:
        return load_profile(db, "main")
    except LookupError:
        return None


def test_run_start_ends_waiting_saying_when_the_next_is_due(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    faults = Faults(rcpt={"p1@example.org": ["450 4.7.1 too much mail, slow down"]})
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with SmtpServer(faults=faults) as server:
        path = tmp_path / "in.json"
        path.write_text(json.dumps(document(3, server.port, retry_after_seconds=[600])))
        assert cli.main(["import", str(path), "--db", url]) == 0
        code = cli.main(["run", "start", "inv", "--db", url])
    _, err = capsys.readouterr()
    assert code == 0
    assert "run 1 waiting: 2 sent, 1 retrying" in err
    assert "the next is due at 20" in err
    # The commands it suggests work on the database this one was given.
    assert f"msgrun worker --db {url} (or msgrun run restart 1 --db {url})" in err
    assert server.recipients() == {"p0@example.org": 1, "p2@example.org": 1}
