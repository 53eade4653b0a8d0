"""``msgrun smtp test``: a sending profile checked step by step, in words a person reads.

Steps, in order, as far as they get: resolve, connect, tls (security ``tls``),
banner, ehlo, starttls (security ``starttls``; the EHLO sent again belongs to
it), auth (when a user name is set), and with a test address mail_from,
rcpt_to and data: ``SMTP_STEPS``, a row and a function per step (as the
planner's ``RULES``). The first failing step ends the check. Every network step
has the profile's timeout. Then, whatever became of those, the sender
authentication steps spf, dkim and dmarc (``sender_auth``); the report's ``ok``
covers the SMTP steps alone, ``sender_auth_ok`` the other three. The password
is read from the environment variable the profile names and never appears in a
step or the transcript.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import format_datetime, make_msgid

from sqlalchemy import select, update

from core.delivery.smtp import (
    RunFault,
    auth_mechanism,
    dkim_signer,
    hello_name,
    no_auth_hint,
    tls_context,
)
from core.messages.message import build_message
from core.passwords import find_password, how_to_provide, missing
from core.sender_auth import NOT_LOOKED_UP, AuthStep, sender_auth_steps
from core.sender_auth import STEPS as SENDER_AUTH_STEPS
from core.smtp_profiles import ProfileSettings
from core.storage.database import Database
from core.storage.models import SmtpProfile, table_of


@dataclass
class Step:
    step: str
    ok: bool
    ms: float
    detail: str
    hint: str | None = None
    warning: str | None = None  # a concern that does not fail the step

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "step": self.step,
            "ok": self.ok,
            "ms": round(self.ms, 1),
            "detail": self.detail,
        }
        if self.hint is not None:
            data["hint"] = self.hint
        if self.warning is not None:
            data["warning"] = self.warning
        return data


@dataclass
class CheckReport:
    profile: str
    steps: list[Step] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    # The SIZE the server's (last) EHLO announced (attachments.md): None when it
    # announced none, or 0, or no number; ``ehlo_seen`` False when no EHLO was answered.
    server_size: int | None = None
    ehlo_seen: bool = False

    @property
    def smtp_steps(self) -> list[Step]:
        return [step for step in self.steps if step.step not in SENDER_AUTH_STEPS]

    @property
    def ok(self) -> bool:
        """Every SMTP step passed (the sender authentication steps do not count)."""
        smtp = self.smtp_steps
        return bool(smtp) and all(step.ok for step in smtp)

    @property
    def failed_step(self) -> str | None:
        """The SMTP step that failed, if one did."""
        return next((step.step for step in self.smtp_steps if not step.ok), None)

    @property
    def sender_auth(self) -> list[Step]:
        return [step for step in self.steps if step.step in SENDER_AUTH_STEPS]

    @property
    def sender_auth_ok(self) -> bool:
        auth = self.sender_auth
        return len(auth) == len(SENDER_AUTH_STEPS) and all(step.ok for step in auth)

    @property
    def sender_auth_verdict(self) -> str:
        """ "sender authentication: fails DMARC" and the like, or that it passes."""
        failed = [step.step.upper() for step in self.sender_auth if not step.ok]
        if self.sender_auth and all(s.detail.endswith(NOT_LOOKED_UP) for s in self.sender_auth):
            return "sender authentication: not checked (domains reserved for testing)"
        if not failed:
            return "sender authentication: passes SPF, DKIM and DMARC checks"
        return "sender authentication: fails " + " and ".join(failed)

    def as_json(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "ok": self.ok,
            "sender_auth_ok": self.sender_auth_ok,
            "steps": [step.as_json() for step in self.steps],
        }


class StepFailed(Exception):
    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


@dataclass
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


def certificate_summary(der: bytes | None) -> str:
    """Subject, issuer and expiry of a certificate, for a person."""
    if not der:
        return "the server sent no certificate"
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(der)
    expires = certificate.not_valid_after_utc
    names: list[str] = []
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in extension.value.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in extension.value.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    subject = certificate.subject.rfc4514_string() or "(empty)"
    issuer = certificate.issuer.rfc4514_string() or "(empty)"
    valid_for = f"; valid for {', '.join(names)}" if names else ""
    return f"subject {subject}; issuer {issuer}; expires {expires:%Y-%m-%d}{valid_for}"


class Dialogue:
    """One SMTP conversation over asyncio streams, with a transcript."""

    def __init__(self, report: CheckReport, timeout: float) -> None:
        self.report = report
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def read_reply(self) -> Reply:
        assert self.reader is not None
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), self.timeout)
            if not raw:
                raise StepFailed(
                    "the server closed the connection",
                    "the server hung up: it may not accept connections from here",
                )
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.report.transcript.append(f"S: {line}")
            code_text, separator, rest = line[:3], line[3:4], line[4:]
            if not code_text.isdigit():
                raise StepFailed(
                    f"not an SMTP reply: {line!r}",
                    "something other than an SMTP server answers on this port",
                )
            lines.append(rest)
            if separator != "-":
                return Reply(int(code_text), lines)

    async def command(self, line: str, shown: str | None = None) -> Reply:
        assert self.writer is not None
        self.report.transcript.append(f"C: {shown if shown is not None else line}")
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await asyncio.wait_for(self.writer.drain(), self.timeout)
        return await self.read_reply()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _learn_size(report: CheckReport, extensions: dict[str, str]) -> None:
    value = extensions.get("SIZE", "").strip()
    report.ehlo_seen = True
    report.server_size = int(value) if value.isdigit() and int(value) > 0 else None


def _extensions(reply: Reply) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in reply.lines[1:]:
        name, _, value = line.partition(" ")
        found[name.upper()] = value
    return found


def _tls_failure(error: ssl.SSLError, host: str, der: bytes | None) -> StepFailed:
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or str(error)
        summary = certificate_summary(der)
        if error.verify_code == 62 or "Hostname mismatch" in str(error):
            hint = (
                f"the certificate is not for {host} ({summary}): use the host name the "
                "certificate names"
            )
        elif "expired" in reason:
            hint = f"the server's certificate has expired ({summary})"
        else:
            hint = (
                f"the certificate is not trusted ({summary}): name its CA in the profile's "
                "ca_file, or, for a server you control, set tls_verify false"
            )
        return StepFailed(f"certificate verify failed: {reason}", hint)
    text = str(error)
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return StepFailed(
            f"TLS failed: {text}",
            "the server does not start TLS on this port: use security starttls (port 587) or none",
        )
    return StepFailed(f"TLS failed: {text}", "the TLS handshake failed")


async def _peer_certificate(
    host: str, address: str, port: int, starttls: bool, timeout: float, helo: str
) -> bytes | None:
    """Fetch the server's certificate without verifying it (to describe it)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        if not starttls:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port, ssl=context, server_hostname=host), timeout
            )
        else:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
            report = CheckReport("probe")
            dialogue = Dialogue(report, timeout)
            dialogue.reader, dialogue.writer = reader, writer
            await dialogue.read_reply()
            await dialogue.command(f"EHLO {helo}")
            await dialogue.command("STARTTLS")
            await asyncio.wait_for(writer.start_tls(context, server_hostname=host), timeout)
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        writer.close()
        return der
    except Exception:
        return None


@dataclass
class Check:
    """One check of one profile: what its steps share, and what they learn on the way."""

    profile: ProfileSettings
    environ: Mapping[str, str]
    to: str | None
    now: Callable[[], datetime] | None
    report: CheckReport
    dialogue: Dialogue
    # The name runs greet with too (domain.md, Same conversation as the test).
    helo: str
    address: str | None = None  # resolve's answer
    extensions: dict[str, str] = field(default_factory=dict)  # the last EHLO's

    @property
    def host(self) -> str:
        return self.profile.host

    @property
    def port(self) -> int:
        return self.profile.port

    @property
    def timeout(self) -> float:
        return self.profile.timeout_seconds


async def resolve(check: Check) -> str:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(check.host, check.port, type=socket.SOCK_STREAM), check.timeout
        )
    except socket.gaierror as error:
        raise StepFailed(
            f"{check.host} does not resolve: {error.strerror}",
            "check the spelling of the host name",
        ) from None
    check.address = str(infos[0][4][0])
    return check.address


async def connect(check: Check) -> str:
    address = str(check.address)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(address, check.port), check.timeout
    )
    check.dialogue.reader, check.dialogue.writer = reader, writer
    return f"connected to {address}:{check.port}"


def connect_silence(check: Check) -> str:
    return (
        f"{check.host}:{check.port} does not answer: a firewall may block the port, "
        "or the host or port is wrong"
    )


async def implicit_tls(check: Check) -> str:
    writer = check.dialogue.writer
    assert writer is not None
    await asyncio.wait_for(
        writer.start_tls(tls_context(check.profile), server_hostname=check.host), check.timeout
    )
    return _tls_summary(writer)


async def banner(check: Check) -> str:
    reply = await check.dialogue.read_reply()
    if reply.code != 220:
        raise StepFailed(str(reply), "the server greets with a refusal")
    return str(reply)


def banner_silence(check: Check) -> str:
    if check.port == 465:
        return (
            "the server accepted the connection but says nothing: port 465 "
            "expects TLS from the start (security tls)"
        )
    return (
        "the server accepted the connection but never greeted: is this "
        "an SMTP port? (25, 587, or 465 with security tls)"
    )


async def ehlo(check: Check) -> str:
    reply = await check.dialogue.command(f"EHLO {check.helo}")
    if reply.code != 250:
        raise StepFailed(str(reply), "the server refused EHLO")
    check.extensions = _extensions(reply)
    _learn_size(check.report, check.extensions)
    return _describe_extensions(check.extensions)


async def starttls(check: Check) -> str:
    """STARTTLS, and the EHLO sent again over TLS."""
    dialogue = check.dialogue
    if "STARTTLS" not in check.extensions:
        raise StepFailed(
            "the server does not offer STARTTLS",
            "use the port that offers STARTTLS (usually 587), or security tls on 465",
        )
    reply = await dialogue.command("STARTTLS")
    if reply.code != 220:
        raise StepFailed(str(reply), "the server refused to start TLS")
    assert dialogue.writer is not None
    await asyncio.wait_for(
        dialogue.writer.start_tls(tls_context(check.profile), server_hostname=check.host),
        check.timeout,
    )
    summary = _tls_summary(dialogue.writer)
    again = await dialogue.command(f"EHLO {check.helo}")
    if again.code != 250:
        raise StepFailed(str(again), "the server refused EHLO after STARTTLS")
    check.extensions = _extensions(again)
    _learn_size(check.report, check.extensions)
    return f"{summary}; {_describe_extensions(check.extensions)}"


async def auth(check: Check) -> str:
    profile, extensions, dialogue = check.profile, check.extensions, check.dialogue
    assert profile.username is not None and profile.password_env is not None
    password = find_password(profile.password_env, check.environ)
    if not password:
        raise StepFailed(
            missing(profile.password_env, check.environ),
            how_to_provide(profile.password_env, profile.id),
        )
    if "AUTH" not in extensions:
        raise StepFailed(
            "the server offers no AUTH", no_auth_hint(profile, "STARTTLS" in extensions)
        )
    mechanisms = extensions["AUTH"].upper().split()
    mechanism = auth_mechanism(extensions["AUTH"])
    user = profile.username
    if mechanism == "PLAIN":
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        reply = await dialogue.command(f"AUTH PLAIN {token}", "AUTH PLAIN ********")
    elif mechanism == "LOGIN":
        reply = await dialogue.command("AUTH LOGIN")
        if reply.code == 334:
            reply = await dialogue.command(
                base64.b64encode(user.encode()).decode(), "******** (user name)"
            )
        if reply.code == 334:
            reply = await dialogue.command(
                base64.b64encode(password.encode()).decode(), "******** (password)"
            )
    else:
        raise StepFailed(
            f"the server offers AUTH {' '.join(mechanisms)}",
            "msgrun logs in with PLAIN or LOGIN, which this server does not offer",
        )
    if reply.code != 235:
        hint = (
            "the server refused the user name or password"
            if reply.code == 535
            else "the server refused the login"
        )
        raise StepFailed(str(reply), hint)
    return f"{reply} as {user}"


async def mail_from(check: Check) -> str:
    reply = await check.dialogue.command(f"MAIL FROM:<{check.profile.from_address}>")
    if reply.code != 250:
        raise StepFailed(str(reply), _mail_from_hint(reply, check.profile))
    return str(reply)


async def rcpt_to(check: Check) -> str:
    to = check.to
    assert to is not None
    reply = await check.dialogue.command(f"RCPT TO:<{to}>")
    if reply.code not in (250, 251):
        relay = reply.code in (550, 551, 553, 554) and (
            "relay" in reply.text.lower() or "5.7.1" in reply.text
        )
        hint = (
            (
                f"the server will not relay to {to}: log in (user name), or send "
                "through the server of your own domain"
            )
            if relay
            else (f"the server refused {to}")
        )
        raise StepFailed(str(reply), hint)
    return str(reply)


async def data(check: Check) -> str:
    profile, dialogue, to = check.profile, check.dialogue, check.to
    assert to is not None
    try:
        # Signed the way a run signs (inbox.md); a key a run could not use fails here too.
        signer = dkim_signer(profile, check.environ)
    except RunFault as fault:
        raise StepFailed(
            str(fault), "a run on this profile would fail: fix its DKIM key (dkim below)"
        ) from None
    reply = await dialogue.command("DATA")
    if reply.code != 354:
        raise StepFailed(str(reply), "the server refused to take a message")
    moment = check.now() if check.now is not None else datetime.now().astimezone()
    envelope = build_message(
        from_address=profile.from_address,
        from_name=profile.from_name,
        to_address=to,
        to_name=None,
        subject=f"msgrun test message from profile {profile.id}",
        text=(
            f"This is a test message sent by msgrun (profile {profile.id}) on "
            f"{format_datetime(moment)}.\nIf you can read it, the profile works.\n"
        ),
        html=None,
        message_id=make_msgid(domain=profile.from_address.rpartition("@")[2]),
        date=moment,
        reply_to=profile.reply_to,
    )
    if signer is not None:
        envelope = replace(envelope, data=signer.sign(envelope.data, moment))
    assert dialogue.writer is not None
    body = envelope.data.replace(b"\r\n.", b"\r\n..")
    dialogue.writer.write(body + b".\r\n")
    check.report.transcript.append(f"C: ({len(envelope.data)} bytes of message) .")
    await asyncio.wait_for(dialogue.writer.drain(), check.timeout)
    final = await dialogue.read_reply()
    if final.code != 250:
        raise StepFailed(str(final), "the server refused the message")
    return str(final)


def _always(check: Check) -> bool:
    return True


@dataclass(frozen=True)
class SmtpStep:
    """A row of ``SMTP_STEPS``: a step's name, its work (its detail when it passes,
    StepFailed when it fails), when it is taken, and what to do when the server
    falls silent in it."""

    name: str
    work: Callable[[Check], Awaitable[str]]
    applies: Callable[[Check], bool] = _always
    silence: Callable[[Check], str] | None = None


# The SMTP steps, in order; the first that fails ends them.
SMTP_STEPS: tuple[SmtpStep, ...] = (
    SmtpStep("resolve", resolve),
    SmtpStep("connect", connect, silence=connect_silence),
    SmtpStep("tls", implicit_tls, applies=lambda c: c.profile.security == "tls"),
    SmtpStep("banner", banner, silence=banner_silence),
    SmtpStep("ehlo", ehlo),
    SmtpStep("starttls", starttls, applies=lambda c: c.profile.security == "starttls"),
    SmtpStep("auth", auth, applies=lambda c: c.profile.username is not None),
    SmtpStep("mail_from", mail_from, applies=lambda c: c.to is not None),
    SmtpStep("rcpt_to", rcpt_to, applies=lambda c: c.to is not None),
    SmtpStep("data", data, applies=lambda c: c.to is not None),
)


async def take_step(check: Check, row: SmtpStep, timer: Callable[[], float]) -> Step:
    """Do one step, timed; what went wrong in it, in words, when it fails."""
    started = timer()
    hint: str | None = None
    try:
        detail, ok = await row.work(check), True
    except StepFailed as failure:
        detail, ok, hint = failure.detail, False, failure.hint
    except TimeoutError:
        detail, ok = f"no answer within {check.timeout:g} s", False
        hint = row.silence(check) if row.silence else "the server stopped answering"
    except ssl.SSLError as error:
        der = await _peer_certificate(
            check.host,
            check.address or check.host,
            check.port,
            row.name == "starttls",
            check.timeout,
            check.helo,
        )
        tls = _tls_failure(error, check.host, der)
        detail, ok, hint = tls.detail, False, tls.hint
    except OSError as error:
        detail, ok = f"{type(error).__name__}: {error.strerror or error}", False
        if isinstance(error, ConnectionRefusedError):
            hint = (
                f"nothing listens on {check.host}:{check.port}: check the port (587 for "
                "starttls, 465 for tls, 25 for none)"
            )
    return Step(row.name, ok, (timer() - started) * 1000, detail, hint)


async def check_profile(
    profile: ProfileSettings,
    environ: Mapping[str, str],
    *,
    to: str | None = None,
    on_step: Callable[[Step], None] | None = None,
    now: Callable[[], datetime] | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> CheckReport:
    """Run the checks; each finished step is reported to ``on_step`` as it comes.

    ``timer`` measures each step (seconds); tests that take pictures pass a steady one.
    """
    report = CheckReport(profile.id)

    def add(step: Step) -> None:
        report.steps.append(step)
        if on_step is not None:
            on_step(step)

    dialogue = Dialogue(report, profile.timeout_seconds)
    check = Check(profile, environ, to, now, report, dialogue, hello_name(profile))
    try:
        for row in SMTP_STEPS:
            if row.applies(check):
                step = await take_step(check, row, timer)
                add(step)
                if not step.ok:
                    break
        if report.ok and dialogue.writer is not None:
            with contextlib.suppress(TimeoutError, OSError, StepFailed):
                await asyncio.wait_for(dialogue.command("QUIT"), check.timeout)
    finally:
        dialogue.close()

    def auth_step(found: AuthStep, ms: float) -> None:
        add(Step(found.step, found.ok, ms, found.detail, found.hint, found.warning))

    await sender_auth_steps(profile, environ, on_step=auth_step, timer=timer)
    return report


def _mail_from_hint(reply: Reply, profile: ProfileSettings) -> str:
    """What to do about a refused MAIL FROM."""
    text = reply.text.upper()
    if reply.code == 530 and "STARTTLS" in text:
        return "the server wants TLS before mail: use security starttls (port 587) or tls (465)"
    if reply.code == 530 or "AUTHENTICATION REQUIRED" in text:
        return (
            "the server wants a login before mail: set the profile's username and password_env"
            if profile.username is None
            else "the server wants a login before mail: check security and port"
        )
    return (
        f"the server will not accept mail from {profile.from_address}: "
        "is the sender allowed for this account?"
    )


def _tls_summary(writer: asyncio.StreamWriter) -> str:
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return "TLS"
    der = ssl_object.getpeercert(binary_form=True)
    verified = (
        "verified"
        if ssl_object.context.verify_mode != ssl.CERT_NONE
        else ("NOT VERIFIED (tls_verify is false)")
    )
    return f"{ssl_object.version()} {ssl_object.cipher()[0]}, certificate {verified}: " + (
        certificate_summary(der)
    )


def _describe_extensions(extensions: dict[str, str]) -> str:
    parts = [f"{name} {value}".strip() for name, value in extensions.items()]
    return ", ".join(parts) if parts else "no extensions"


def load_profile(database: Database, profile_id: str) -> ProfileSettings:
    """The stored profile, or UnknownProfile."""
    table = table_of(SmtpProfile)
    with database.connect() as connection:
        row = connection.execute(select(table).where(table.c.id == profile_id)).first()
        if row is None:
            known = ", ".join(connection.execute(select(table.c.id).order_by(table.c.id)).scalars())
            raise UnknownProfile(
                f"unknown SMTP profile {profile_id!r} (profiles: {known or 'none yet'})"
            )
    return ProfileSettings.from_row(row)


class UnknownProfile(LookupError):
    """No SMTP profile has that id (bad usage: exit 2)."""


def record_result(
    database: Database,
    profile_id: str,
    ok: bool,
    at: datetime,
    report: CheckReport | None = None,
) -> None:
    """Remember the last test of a profile (the plan warns about one never tested, and
    about one whose dmarc step failed), and the size limit its server announced (rule
    20), when the test got that far."""
    table = table_of(SmtpProfile)
    values: dict[str, object] = {"last_test_at": at, "last_test_ok": ok}
    if ok:
        values["last_test_ok_at"] = at
    if report is not None and report.ehlo_seen:
        values["server_size"] = report.server_size
    if report is not None and report.sender_auth:
        values["last_sender_auth"] = {
            "at": at.isoformat(),
            "sender_auth_ok": report.sender_auth_ok,
            "steps": [{"name": s.step, "ok": s.ok, "detail": s.detail} for s in report.sender_auth],
        }
    with database.connect() as connection:
        connection.execute(update(table).where(table.c.id == profile_id).values(**values))
