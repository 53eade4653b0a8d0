"""DKIM signing per profile (inbox.md, Signing): every kind of message verifies with an
implementation other than msgrun's (Perl's Mail::DKIM), a profile's key that cannot be
used is a fault of the profile, and import refuses settings that cannot align."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from core.clock import parse_instant
from core.delivery.smtp import RunFault, dkim_signer
from core.dkim_keys import DkimKeyError, DkimSettings, read_pem
from core.messages.compose import Composer, Draft, Templates
from core.messages.dkim_sign import DkimSigner
from core.planner.plan import make_plan
from core.smtp_profiles import ProfileSettings
from core.storage import Database
from core.vocabulary import DEFINITION_KINDS
from fixtures.smtp_servers import SmtpServer
from tests.conftest import load, load_ok
from tests.delivery_support import (
    AT,
    assert_counts_match_rows,
    deliver_now,
    document,
    new_run,
    profile_settings,
)
from tests.dkim_support import pem_of, perl_verify, rsa_key

NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
RECORD = "msgrun._domainkey.pools.example.com"


def profile(**changes: Any) -> ProfileSettings:
    values: dict[str, Any] = dict(
        from_address="billing@mail.pools.example.com",
        from_name="Blue Lagoon Pools – Zürich",
        reply_to="accounts@pools.example.com",
    )
    values.update(changes)
    return profile_settings(**values)


def signer(**changes: Any) -> DkimSigner:
    settings = DkimSettings(domain="pools.example.com", selector="msgrun", private_key_env="K")
    return DkimSigner(settings, pem_of(rsa_key()))


def composed(kind: str, address: str, name: str) -> bytes:
    templates = Templates(
        definition_id=kind,
        subject="Rechnung – für {{ contact.name }}  🎉  {{ organisation.name }}",
        text="Grüße, {{ contact.name }}\n\nDer Betrag ist fällig.\n" * 3,
        html="<p>Grüße {{ contact.name }}</p>" if kind != "invoice" else None,
        organisation={"name": "Blue Lagoon Pools", "timezone": "UTC"},
        kind=kind,
    )
    draft = Draft(
        position=1,
        message_id=f"<msgrun.1.{kind}@pools.example.com>",
        address=address,
        to_name=name,
        values={"contact": {"name": name}, "organisation": templates.organisation},
    )
    composer = Composer(7, profile(), templates, signer())
    return composer.build(draft, NOW).data


def tag(message: bytes, name: str) -> str:
    head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    signature = re.search(r"^DKIM-Signature: (.*?)\r\n(?![ \t])", head, re.M | re.S)
    assert signature is not None
    value = re.sub(r"\s+", "", signature.group(1))
    found = re.search(rf"(?:^|;){name}=([^;]*)", value)
    return found.group(1) if found else ""


def test_every_kind_of_message_verifies_with_perl_mail_dkim() -> None:
    people = [
        ("jurgen@example.org", "Jürgen Müller"),
        ("elodie@example.org", "Élodie Dupré"),
        ("山田@例え.jp", "山田 太郎"),  # SMTPUTF8
    ]
    messages = [
        composed(kind, address, name) for kind in DEFINITION_KINDS for address, name in people
    ]
    verdicts = perl_verify(messages, {RECORD: rsa_key()})
    assert verdicts == ["pass d=pools.example.com pass"] * len(messages)
    for message in messages:
        signed = tag(message, "h").split(":")
        for header in (
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "mime-version",
            "content-type",
            "reply-to",
            "auto-submitted",
        ):
            assert header in signed
        assert tag(message, "c") == "relaxed/relaxed" and tag(message, "l") == ""
        assert tag(message, "a") == "rsa-sha256" and tag(message, "d") == "pools.example.com"


def test_a_message_changed_on_the_way_fails_verification() -> None:
    message = composed("broadcast", "ana@example.org", "Ana")
    appended = message + b"Click here for a prize\r\n"
    reworded = message.replace(b"Subject: ", b"Subject: FREE ", 1)
    verdicts = perl_verify([appended, reworded], {RECORD: rsa_key()})
    assert all(v.startswith("fail") for v in verdicts), verdicts


def test_the_signer_crosses_into_a_sender_process_without_losing_its_key() -> None:
    import pickle

    again = pickle.loads(pickle.dumps(signer()))
    data = again.sign(b"From: a@pools.example.com\r\nSubject: x\r\n\r\nbody\r\n", NOW)
    assert perl_verify([data], {RECORD: rsa_key()}) == ["pass d=pools.example.com pass"]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "does not exist"),
        ("unset", "environment variable MSGRUN_DKIM (the DKIM key) is not set"),
        ("small", "RSA key of 1024 bits"),
        ("ed25519", "holds no RSA private key"),
        ("garbage", "holds no PEM private key"),
    ],
)
def test_a_key_that_cannot_be_used_is_a_fault_of_the_profile(
    tmp_path: Path, setup: str, expected: str
) -> None:
    key_file = tmp_path / "dkim.pem"
    if setup == "small":
        key_file.write_bytes(pem_of(rsa_key(1024)))
    elif setup == "ed25519":
        key_file.write_bytes(pem_of(ed25519.Ed25519PrivateKey.generate()))
    elif setup == "garbage":
        key_file.write_text("not a key\n")
    settings = (
        DkimSettings("pools.example.com", "msgrun", private_key_env="MSGRUN_DKIM")
        if setup == "unset"
        else DkimSettings("pools.example.com", "msgrun", private_key_file=str(key_file))
    )
    with pytest.raises(DkimKeyError, match=re.escape(expected)):
        read_pem(settings, {})
    with pytest.raises(RunFault, match="SMTP profile main: "):
        dkim_signer(profile(dkim=settings), {})


def signing_document(count: int, port: int, dkim: dict[str, Any]) -> dict[str, Any]:
    doc = document(count, port)
    doc["smtp_profiles"][0].update(
        from_address="billing@mail.pools.example.com", from_name="Blue Lagoon Pools", dkim=dkim
    )
    return doc


@pytest.mark.usefixtures("sending_ways")
@pytest.mark.timeout(120)
def test_a_signed_run_sends_messages_that_verify(db: Database, tmp_path: Path) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem_of(rsa_key()))
    dkim = {"domain": "pools.example.com", "selector": "msgrun", "private_key_file": str(key_file)}
    with SmtpServer() as server:
        run_id = new_run(db, signing_document(6, server.port, dkim))
        assert deliver_now(db, run_id).state == "completed"
    messages = [m.data for m in server.messages()]
    assert len(messages) == 6
    assert perl_verify(messages, {RECORD: rsa_key()}) == ["pass d=pools.example.com pass"] * 6
    assert str(key_file) not in str(db.url)


@pytest.mark.usefixtures("sending_ways")
@pytest.mark.timeout(120)
def test_a_missing_key_fails_the_run_and_sends_nothing_unsigned(
    db: Database, tmp_path: Path
) -> None:
    dkim = {"domain": "pools.example.com", "selector": "msgrun", "private_key_env": "NO_KEY"}
    with SmtpServer() as server:
        run_id = new_run(db, signing_document(3, server.port, dkim))
        delivery = deliver_now(db, run_id, environ={})
    assert delivery.state == "failed"
    assert "NO_KEY" in (delivery.error or "") and "not set" in (delivery.error or "")
    assert assert_counts_match_rows(db, run_id)["pending"] == 3
    assert server.messages() == []


@pytest.mark.parametrize(
    ("dkim", "path", "message"),
    [
        (
            {"domain": "example.net", "selector": "s", "private_key_env": "K"},
            "smtp_profiles[0].dkim.domain",
            "does not align with the from_address domain 'mail.pools.example.com'",
        ),
        (
            {"domain": "com.au", "selector": "s", "private_key_env": "K"},
            "smtp_profiles[0].dkim.domain",
            "is a public suffix",
        ),
        (
            {"domain": "pools.example.com", "selector": "s"},
            "smtp_profiles[0].dkim",
            "needs exactly one of private_key_file or private_key_env",
        ),
        (
            {
                "domain": "pools.example.com",
                "selector": "s",
                "private_key_env": "K",
                "private_key": "-----BEGIN PRIVATE KEY-----",
            },
            "smtp_profiles[0].dkim.private_key",
            "a private key is never in the interchange file",
        ),
        (
            {
                "domain": "pools.example.com",
                "selector": "s",
                "private_key_env": "K",
                "algorithm": "ed25519-sha256",
            },
            "smtp_profiles[0].dkim.algorithm",
            "",
        ),
    ],
)
def test_import_refuses_dkim_settings_that_cannot_sign_aligned(
    db: Database, dkim: dict[str, Any], path: str, message: str
) -> None:
    doc = signing_document(1, 2525, dkim)
    outcome = load(db, doc)
    assert not outcome.ok
    assert any(p.path == path and message in p.message for p in outcome.problems), [
        str(p) for p in outcome.problems
    ]


def test_aligned_domains_are_accepted_under_relaxed_alignment(db: Database) -> None:
    for domain in ("pools.example.com", "mail.pools.example.com", "news.pools.example.com"):
        doc = signing_document(1, 2525, {"domain": domain, "selector": "s", "private_key_env": "K"})
        outcome = load(db, doc)
        assert outcome.ok, [str(p) for p in outcome.problems]


def test_the_plan_warns_when_the_dkim_key_variable_is_not_set(db: Database) -> None:
    dkim = {"domain": "pools.example.com", "selector": "s", "private_key_env": "DKIM_PEM"}
    load_ok(db, signing_document(1, 2525, dkim))

    def warned(environ: dict[str, str]) -> list[str]:
        plan = make_plan(db, "inv", parse_instant(AT), environ=environ)
        return [w for w in plan.warnings if "DKIM_PEM" in w]

    assert warned({}) == [
        "SMTP profile main: the environment variable DKIM_PEM that holds its DKIM key is not "
        "set here (the run would fail before sending)"
    ]
    assert warned({"DKIM_PEM": pem_of(rsa_key()).decode()}) == []


def test_smtp_test_signs_its_test_message_the_same_way() -> None:
    import asyncio

    from core.smtp_check import check_profile

    settings = DkimSettings("pools.example.com", "msgrun", private_key_env="DKIM_PEM")
    environ = {"DKIM_PEM": pem_of(rsa_key()).decode()}
    with SmtpServer() as server:
        sending = profile(port=server.port, dkim=settings)
        report = asyncio.run(check_profile(sending, environ, to="ana@example.org"))
        assert report.ok, report.as_json()
        (message,) = server.messages()
        broken = asyncio.run(check_profile(sending, {}, to="ana@example.org"))
    assert perl_verify([message.data], {RECORD: rsa_key()}) == ["pass d=pools.example.com pass"]
    assert b"\r\nReply-To: accounts@pools.example.com\r\n" in message.data
    assert not broken.ok and broken.failed_step == "data"
    assert "DKIM_PEM (the DKIM key) is not set" in broken.smtp_steps[-1].detail
    assert len(server.messages()) == 1  # nothing unsigned went out


def test_import_checks_reply_to_like_from_address(db: Database) -> None:
    doc = document(1, 2525)
    doc["smtp_profiles"][0]["reply_to"] = "office at pools"
    doc["definitions"][0]["reply_to"] = "accounts@"
    outcome = load(db, doc)
    paths = {p.path for p in outcome.problems}
    assert paths == {"smtp_profiles[0].reply_to", "definitions[0].reply_to"}
    doc["smtp_profiles"][0]["reply_to"] = "office@pools.example.com"
    doc["definitions"][0]["reply_to"] = "accounts@pools.example.com"
    assert load(db, doc).ok
