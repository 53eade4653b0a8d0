"""msgrun smtp test against real aiosmtpd servers: every step, every failure, no password."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme

from core.clock import parse_instant
from core.planner.plan import make_plan
from core.smtp_check import CheckReport, check_profile
from core.smtp_profiles import ProfileSettings
from core.storage import Database
from fixtures.smtp_servers import Faults, SmtpServer, free_port
from tests.conftest import load_ok
from tests.delivery_support import AT, document, profile_settings

pytestmark = pytest.mark.timeout(60)
SECRET = "s3cret-Pa55"


def profile(port: int, **changes: Any) -> ProfileSettings:
    return profile_settings(**{"port": port, "timeout_seconds": 3.0, **changes})


def check(
    settings: ProfileSettings, to: str | None = None, environ: dict[str, str] | None = None
) -> CheckReport:
    return asyncio.run(check_profile(settings, environ or {}, to=to))


def steps(report: CheckReport) -> list[tuple[str, bool]]:
    return [(s.step, s.ok) for s in report.smtp_steps]


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def ca_file(authority: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return str(path)


def test_a_plain_server_passes_every_step() -> None:
    with SmtpServer() as server:
        report = check(profile(server.port))
    assert report.ok
    assert steps(report) == [("resolve", True), ("connect", True), ("banner", True), ("ehlo", True)]
    assert report.steps[0].detail == "127.0.0.1"
    assert report.steps[1].detail == f"connected to 127.0.0.1:{server.port}"
    assert report.steps[2].detail.startswith("220 ")
    assert "8BITMIME" in report.steps[3].detail
    assert list(report.as_json()) == ["profile", "ok", "sender_auth_ok", "steps"]
    assert list(report.as_json()["steps"][0]) == ["step", "ok", "ms", "detail"]  # type: ignore[index]


def test_a_test_message_is_sent_with_to() -> None:
    with SmtpServer() as server:
        report = check(profile(server.port), to="ana@example.org")
        assert report.ok
        assert [s for s, _ in steps(report)][-3:] == ["mail_from", "rcpt_to", "data"]
        (message,) = server.messages()
    assert message.recipient == "ana@example.org"
    assert "test message" in str(message.message["Subject"])


def test_starttls_with_a_trusted_ca_passes(server_context: ssl.SSLContext, ca_file: str) -> None:
    with SmtpServer(security="starttls", certificate_context=server_context) as server:
        report = check(profile(server.port, security="starttls", ca_file=ca_file))
    assert report.ok, report.steps
    assert steps(report)[-1] == ("starttls", True)
    assert "certificate verified" in report.smtp_steps[-1].detail
    assert "STARTTLS" not in report.smtp_steps[-1].detail.split(";")[-1]  # the EHLO after TLS


def test_starttls_with_an_untrusted_certificate_fails_with_the_reason(
    server_context: ssl.SSLContext,
) -> None:
    with SmtpServer(security="starttls", certificate_context=server_context) as server:
        report = check(profile(server.port, security="starttls"))
    assert not report.ok
    failed = report.smtp_steps[-1]
    assert (failed.step, failed.ok) == ("starttls", False)
    assert failed.detail.startswith("certificate verify failed")
    assert failed.hint is not None and "issuer" in failed.hint and "expires" in failed.hint
    assert "not trusted" in failed.hint


def test_implicit_tls(server_context: ssl.SSLContext, ca_file: str) -> None:
    with SmtpServer(security="tls", certificate_context=server_context) as server:
        report = check(profile(server.port, security="tls", ca_file=ca_file))
    assert report.ok, report.steps
    assert steps(report)[:4] == [
        ("resolve", True),
        ("connect", True),
        ("tls", True),
        ("banner", True),
    ]


def test_a_self_signed_server_with_verification_off_is_flagged(
    server_context: ssl.SSLContext,
) -> None:
    with SmtpServer(security="starttls", certificate_context=server_context) as server:
        report = check(profile(server.port, security="starttls", tls_verify=False))
    assert report.ok
    assert "NOT VERIFIED" in report.smtp_steps[-1].detail


def test_the_wrong_security_mode_says_so() -> None:
    with SmtpServer() as server:
        tls_on_plain = check(profile(server.port, security="tls"))
        starttls_missing = check(profile(server.port, security="starttls"))
    assert steps(tls_on_plain)[-1] == ("tls", False)
    assert "does not start TLS on this port" in (tls_on_plain.smtp_steps[-1].hint or "")
    assert steps(starttls_missing)[-1] == ("starttls", False)
    assert starttls_missing.smtp_steps[-1].detail == "the server does not offer STARTTLS"


def test_auth_with_the_right_and_the_wrong_password() -> None:
    settings = profile(0, username="billing", password_env="PW")
    with SmtpServer(users={"billing": SECRET}) as server:
        good = check(replace(settings, port=server.port), environ={"PW": SECRET})
        bad = check(replace(settings, port=server.port), environ={"PW": "wrong-" + SECRET})
        unset = check(replace(settings, port=server.port), environ={})
    assert good.ok and steps(good)[-1] == ("auth", True)
    assert steps(bad)[-1] == ("auth", False)
    assert bad.smtp_steps[-1].detail.startswith("535")
    assert bad.smtp_steps[-1].hint == "the server refused the user name or password"
    assert steps(unset)[-1] == ("auth", False)
    assert "PW is not set" in unset.smtp_steps[-1].detail
    for report in (good, bad, unset):
        shown = json.dumps(report.as_json()) + "\n".join(report.transcript)
        assert SECRET not in shown
        assert "AUTH PLAIN ********" in "\n".join(report.transcript) or report is unset


def test_relay_denied_at_rcpt() -> None:
    faults = Faults(rcpt={"ana@example.org": ["554 5.7.1 Relay access denied"]})
    with SmtpServer(faults=faults) as server:
        report = check(profile(server.port), to="ana@example.org")
    assert steps(report)[-1] == ("rcpt_to", False)
    assert "will not relay" in (report.smtp_steps[-1].hint or "")


def test_a_message_refused_at_data() -> None:
    faults = Faults(data={"ana@example.org": ["552 5.3.4 message too big"]})
    with SmtpServer(faults=faults) as server:
        report = check(profile(server.port), to="ana@example.org")
    assert steps(report)[-1] == ("data", False)
    assert report.smtp_steps[-1].detail == "552 5.3.4 message too big"


def test_a_closed_port() -> None:
    report = check(profile(free_port()))
    assert steps(report) == [("resolve", True), ("connect", False)]
    assert "nothing listens" in (report.smtp_steps[-1].hint or "")


def test_a_server_that_never_answers_is_bounded_by_the_timeout() -> None:
    with SmtpServer(faults=Faults(banner_delay=30)) as server:
        report = check(profile(server.port, timeout_seconds=0.5))
    assert steps(report)[-1] == ("banner", False)
    assert report.smtp_steps[-1].detail == "no answer within 0.5 s"
    assert report.smtp_steps[-1].ms < 5000


def test_an_unknown_host_fails_to_resolve() -> None:
    report = check(profile(25, host="no-such-host.invalid"))
    assert steps(report) == [("resolve", False)]
    assert "check the spelling" in (report.steps[0].hint or "")


def test_the_command_line_records_the_result(tmp_path: Path, db: Database) -> None:
    url = db.describe() if db.dialect == "sqlite" else db.url.render_as_string(hide_password=False)
    with SmtpServer(users={"billing": SECRET}) as server:
        doc = document(1, server.port, username="billing", password_env="PW")
        load_ok(db, doc)
        plan = make_plan(db, "inv", parse_instant(AT), environ={"PW": SECRET})
        assert any("never passed an SMTP test" in w for w in plan.warnings)
        exe = str(Path(sys.executable).with_name("msgrun"))
        env = {"PATH": "/usr/bin:/bin", "PW": SECRET}
        result = subprocess.run(
            [exe, "--db", url, "smtp", "test", "main", "--json", "--transcript"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["ok"] is True
        assert SECRET not in result.stdout + result.stderr
        text = subprocess.run(
            [exe, "--db", url, "smtp", "test", "main", "--to", "ana@example.org"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert text.returncode == 0 and "every step passed" in text.stdout
        failing = subprocess.run(
            [exe, "--db", url, "smtp", "test", "main"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},
        )
        assert failing.returncode == 1 and "failed at auth" in failing.stdout
    plan = make_plan(db, "inv", parse_instant(AT), environ={"PW": SECRET})
    assert not any("never passed an SMTP test" in w for w in plan.warnings)
    unknown = subprocess.run(
        [exe, "--db", url, "smtp", "test", "nope"], capture_output=True, text=True
    )
    assert (
        unknown.returncode == 2 and "unknown SMTP profile 'nope' (profiles: main)" in unknown.stderr
    )
    bad_to = subprocess.run(
        [exe, "--db", url, "smtp", "test", "main", "--to", "x@@y"], capture_output=True, text=True
    )
    assert bad_to.returncode == 2 and "--to: 'x@@y' is not a valid email address" in bad_to.stderr
    for server, wrong in (("nonsense", "is not an IP address"), ("127.0.0.1:99999", "not a port")):
        bad_dns = subprocess.run(
            [exe, "--db", url, "smtp", "test", "main"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "MSGRUN_DNS_SERVER": server},
        )
        assert bad_dns.returncode == 2 and f"MSGRUN_DNS_SERVER={server!r}" in bad_dns.stderr
        assert wrong in bad_dns.stderr and "Traceback" not in bad_dns.stderr


def test_the_size_the_server_announces_is_learnt_and_planning_holds_to_it(
    tmp_path: Path, db: Database
) -> None:
    url = db.describe() if db.dialect == "sqlite" else db.url.render_as_string(hide_password=False)
    with SmtpServer() as server:  # aiosmtpd announces SIZE 33554432
        doc = document(1, server.port)
        doc["organisation"]["documents_folder"] = str(tmp_path)
        doc["documents"][0]["files"] = [{"path": "big.pdf"}]
        (tmp_path / "big.pdf").write_bytes(b"%PDF-1.4 " + bytes(40 * 1024 * 1024))
        load_ok(db, doc)
        assert make_plan(db, "inv", parse_instant(AT), environ={}).candidates[0].codes() == []
        exe = str(Path(sys.executable).with_name("msgrun"))
        result = subprocess.run(
            [exe, "--db", url, "smtp", "test", "main"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},
        )
    assert result.returncode == 0, result.stderr
    assert "main: size limit 33,554,432 bytes (the SIZE the server announced)" in result.stdout
    [candidate] = make_plan(db, "inv", parse_instant(AT), environ={}).candidates
    assert candidate.codes() == ["message_too_large"]
    assert "over the limit of 33,554,432 bytes (the SIZE the server announced)" in (
        candidate.reasons[0].detail
    )
