"""The spf, dkim and dmarc steps of ``msgrun smtp test`` (inbox.md), against a DNS server
of the test's own on loopback (MSGRUN_DNS_SERVER): good records, missing ones, a wrong
key, p=reject unaligned, SERVFAIL, and the server stopped."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.clock import parse_instant
from core.dkim_keys import DkimSettings, public_record
from core.planner.plan import make_plan
from core.sender_auth import (
    NO_DMARC,
    NOT_LOOKED_UP,
    STEPS,
    AuthStep,
    sender_auth_steps,
)
from core.smtp_profiles import ProfileSettings
from core.storage import Database
from fixtures.smtp_servers import SmtpServer, free_port
from tests.conftest import load_ok
from tests.delivery_support import AT, document, profile_settings
from tests.dkim_support import pem_of, rsa_key
from tests.dns_server import DnsServer

pytestmark = pytest.mark.timeout(60)
DOMAIN = "bluelagoonpools.com.au"
DKIM_NAME = f"msgrun._domainkey.{DOMAIN}"
PEM = pem_of(rsa_key()).decode()


def profile(**changes: Any) -> ProfileSettings:
    values: dict[str, Any] = dict(
        from_address=f"billing@{DOMAIN}",
        from_name="Blue Lagoon Pools",
        timeout_seconds=3.0,
        bounce_address=f"bounces@{DOMAIN}",
        dkim=DkimSettings(DOMAIN, "msgrun", private_key_env="DKIM_PEM"),
    )
    values.update(changes)
    return profile_settings(**values)


def good_records(server: DnsServer) -> DnsServer:
    server.txt(DOMAIN, "v=spf1 ip4:192.0.2.10 include:_spf.mailer.net -all", "google-site=x")
    server.txt("_spf.mailer.net", "v=spf1 ip4:198.51.100.0/24 -all")
    server.txt(DKIM_NAME, public_record(rsa_key()))  # strings of 255, joined by the reader
    server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; rua=mailto:dmarc@" + DOMAIN)
    return server


def run_steps(
    server: DnsServer | None, settings: ProfileSettings, port: int | None = None
) -> dict[str, AuthStep]:
    environ = {"DKIM_PEM": PEM, "MSGRUN_DNS_SERVER": f"127.0.0.1:{port or server.port}"}  # type: ignore[union-attr]
    steps = asyncio.run(sender_auth_steps(settings, environ))
    assert [s.step for s in steps] == ["spf", "dkim", "dmarc"]
    return {s.step: s for s in steps}


def test_good_records_pass_all_three_and_quote_what_was_found() -> None:
    with good_records(DnsServer()).running() as server:
        steps = run_steps(server, profile())
    assert all(s.ok for s in steps.values()), steps
    assert steps["spf"].detail == f"{DOMAIN}: v=spf1 ip4:192.0.2.10 include:_spf.mailer.net -all"
    assert steps["dkim"].detail == f"{DKIM_NAME}: {public_record(rsa_key())}"
    assert (
        "p=reject" in steps["dmarc"].detail and "aligned by SPF and DKIM" in steps["dmarc"].detail
    )


def test_missing_records_fail_spf_and_dkim_with_the_record_to_publish() -> None:
    with DnsServer().running() as server:
        steps = run_steps(server, profile())
    assert not steps["spf"].ok and steps["spf"].detail == f"no SPF record at {DOMAIN}"
    assert 'publish one TXT record at bluelagoonpools.com.au: "v=spf1 ip4:127.0.0.1 -all"' in (
        steps["spf"].hint or ""
    )
    assert not steps["dkim"].ok
    assert (
        steps["dkim"].hint == f'publish a TXT record at {DKIM_NAME}: "{public_record(rsa_key())}"'
    )
    assert (steps["dkim"].hint or "").count("v=DKIM1; k=rsa; p=") == 1
    assert steps["dmarc"].ok and steps["dmarc"].warning == NO_DMARC


def test_a_record_of_another_key_fails_the_dkim_step() -> None:
    server = good_records(DnsServer())
    server.txt(DKIM_NAME, public_record(rsa_key(3072)))
    with server.running():
        steps = run_steps(server, profile())
    assert not steps["dkim"].ok
    assert "is not the public half of the profile's key" in steps["dkim"].detail
    assert public_record(rsa_key()) in (steps["dkim"].hint or "")
    server.txt(DKIM_NAME, "v=spf1 -all")
    with server.running():
        assert "is not a DKIM key record" in run_steps(server, profile())["dkim"].detail


def test_an_unreadable_key_fails_the_dkim_step_saying_so() -> None:
    with good_records(DnsServer()).running() as server:
        environ = {"MSGRUN_DNS_SERVER": server.address}
        steps = asyncio.run(sender_auth_steps(profile(), environ))
    assert not steps[1].ok and steps[1].detail.startswith("the profile's key cannot be read: ")


def test_p_reject_with_neither_alignment_fails_dmarc_and_says_which_to_set_up() -> None:
    server = good_records(DnsServer())
    server.txt("mailer.net", "v=spf1 include:_spf.mailer.net -all")
    unaligned = profile(dkim=None, bounce_address="bounces@mailer.net")
    with server.running():
        steps = run_steps(server, unaligned)
        relying = run_steps(server, replace(unaligned, server_signs_dkim=True))
    assert steps["spf"].ok and "does not align with the From domain" in (steps["spf"].warning or "")
    assert not steps["dmarc"].ok
    assert "align neither by SPF (envelope domain mailer.net) nor by DKIM" in steps["dmarc"].detail
    assert "DKIM" in (steps["dmarc"].hint or "") and "SPF" in (steps["dmarc"].hint or "")
    assert steps["dkim"].detail == "msgrun does not sign this profile's messages"
    assert relying["dmarc"].ok and "relied on the server" in relying["dmarc"].detail


def test_a_subdomain_takes_the_organisations_sp_policy() -> None:
    server = good_records(DnsServer())
    del server.records[f"_dmarc.{DOMAIN}"]
    server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none; sp=reject")
    sub = profile(
        from_address=f"billing@mail.{DOMAIN}", dkim=None, bounce_address="b@elsewhere.net"
    )
    server.txt("elsewhere.net", "v=spf1 -all")
    with server.running():
        steps = run_steps(server, sub)
    assert not steps["dmarc"].ok and "(policy reject)" in steps["dmarc"].detail
    assert f"_dmarc.{DOMAIN}:" in steps["dmarc"].detail


def test_spf_permerrors_fail_the_step() -> None:
    server = good_records(DnsServer())
    server.txt(DOMAIN, "v=spf1 -all", "v=spf1 a -all")
    with server.running():
        assert "2 SPF records" in run_steps(server, profile())["spf"].detail
    server.txt(
        DOMAIN, "v=spf1 " + " ".join(f"include:s{i}.mailer.net" for i in range(11)) + " -all"
    )
    for i in range(11):
        server.txt(f"s{i}.mailer.net", "v=spf1 -all")
    with server.running():
        spf = run_steps(server, profile())["spf"]
    assert not spf.ok and "more than 10 DNS look-ups" in spf.detail
    server.txt(DOMAIN, "v=spf1 ip4:999.1.1.1 -all")
    with server.running():
        assert "not a valid ip4 network" in run_steps(server, profile())["spf"].detail


def test_servfail_fails_the_step_and_the_others_still_run() -> None:
    server = good_records(DnsServer())
    server.servfail.add(DOMAIN)
    with server.running():
        steps = run_steps(server, profile())
    assert not steps["spf"].ok and "SERVFAIL or refused" in steps["spf"].detail
    assert steps["dkim"].ok and steps["dmarc"].ok


def test_a_stopped_server_fails_each_step_within_the_profiles_timeout() -> None:
    import time

    started = time.monotonic()
    steps = run_steps(None, profile(timeout_seconds=1.0), port=free_port())
    assert time.monotonic() - started < 3
    assert [s.ok for s in steps.values()] == [False, False, False]
    assert "timed out" in steps["spf"].detail


def test_reserved_domains_are_not_looked_up() -> None:
    server = DnsServer()
    reserved = profile(from_address="billing@pools.example.com", bounce_address=None, dkim=None)
    with server.running():
        steps = run_steps(server, reserved)
    assert all(s.ok for s in steps.values())
    assert "reserved for testing or local use" in steps["spf"].detail
    assert server.queries == []


def test_smtp_test_reports_the_steps_without_changing_its_exit_code_and_the_plan_warns(
    db: Database, tmp_path: Path
) -> None:
    url = db.describe() if db.dialect == "sqlite" else db.url.render_as_string(hide_password=False)
    server_records = good_records(DnsServer())
    server_records.txt("mailer.net", "v=spf1 -all")
    with SmtpServer() as smtp, server_records.running() as dns_server:
        doc = document(1, smtp.port)
        doc["smtp_profiles"][0].update(
            from_address=f"billing@{DOMAIN}", bounce_address="bounces@mailer.net"
        )
        load_ok(db, doc)
        exe = str(Path(sys.executable).with_name("msgrun"))
        env = {"PATH": "/usr/bin:/bin", "MSGRUN_DNS_SERVER": dns_server.address}
        result = subprocess.run(
            [exe, "--db", url, "smtp", "test", "main", "--json"],
            capture_output=True,
            text=True,
            env=env,
        )
        text = subprocess.run(
            [exe, "--db", url, "smtp", "test", "main"], capture_output=True, text=True, env=env
        )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["sender_auth_ok"] is False
    assert [s["step"] for s in report["steps"]][-3:] == ["spf", "dkim", "dmarc"]
    dmarc = report["steps"][-1]
    assert dmarc["ok"] is False and "hint" in dmarc
    assert "warning" in report["steps"][-3]  # the bounce address does not align
    assert text.returncode == 0
    assert "main: every step passed" in text.stdout
    assert "main: sender authentication: fails DMARC" in text.stdout
    plan = make_plan(db, "inv", parse_instant(AT), environ={})
    warning = [w for w in plan.warnings if "fail DMARC" in w]
    assert len(warning) == 1 and warning[0].startswith(
        "messages of this definition will fail DMARC at receivers that apply it (smtp test of "
    )


def test_the_verdict_never_says_passes_for_steps_that_looked_nothing_up() -> None:
    """A profile on domains reserved for testing passes its DNS steps unchecked: the
    verdict says so, and claims no SPF, DKIM or DMARC check it never made."""
    from core.smtp_check import CheckReport, Step

    def report(*details: str) -> CheckReport:
        auth = [Step(name, True, 0.0, detail) for name, detail in zip(STEPS, details, strict=True)]
        return CheckReport("main", [Step("connect", True, 1.0, "127.0.0.1"), *auth])

    unchecked = f"pools.example.com is reserved for testing or local use: {NOT_LOOKED_UP}"
    assert report(*[unchecked] * 3).sender_auth_verdict == (
        "sender authentication: not checked (domains reserved for testing)"
    )
    assert report("v=spf1 -all", "v=DKIM1", "v=DMARC1").sender_auth_verdict == (
        "sender authentication: passes SPF, DKIM and DMARC checks"
    )
