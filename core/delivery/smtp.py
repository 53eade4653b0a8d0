"""The SMTP side of delivery: connections, sending one message, sorting replies.

Every network call has the profile's timeout, except the wait for the reply to
the end of a message's data: at least ``policy.FINAL_REPLY_SECONDS`` (RFC 5321
§4.5.3.2.6). Replies are sorted into what the run does with them: sent (2xx),
try again later (4xx, a connection dropped or refused before the data was
complete), failed (5xx), in doubt (the connection lost after the data was
complete and before the reply: ``LostAfterData``), or a fault of the whole run
(credentials refused, TLS failure, no password): one reason for the run instead
of one failure per recipient.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.email import quote_address

from core.delivery.policy import final_reply_seconds, is_hard_bounce
from core.dkim_keys import DkimKeyError, read_pem
from core.messages.dkim_sign import DkimSigner
from core.messages.message import Envelope
from core.passwords import find_password, how_to_provide, missing
from core.smtp_profiles import ProfileSettings


class RunFault(Exception):
    """Nothing can be sent with this profile until a person fixes it."""


class ConnectionFault(Exception):
    """The connection failed or dropped before the message's data was complete; the
    message may be tried again."""


class LostAfterData(Exception):
    """The connection failed after the end of the message's data (the final ``.``) and
    before the server's reply: the message may have been delivered (domain.md, Lost
    after the data), so it is in doubt, never tried again unasked."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def hard_bounce(self) -> bool:
        """The mailbox does not exist (5.1.1)."""
        return is_hard_bounce(self.code, self.text)


def password_for(profile: ProfileSettings, environ: Mapping[str, str]) -> str | None:
    if profile.username is None:
        return None
    assert profile.password_env is not None
    password = find_password(profile.password_env, environ)
    if not password:
        raise RunFault(
            f"SMTP profile {profile.id}: {missing(profile.password_env, environ)} "
            f"({how_to_provide(profile.password_env, profile.id)})"
        )
    return password


def dkim_signer(profile: ProfileSettings, environ: Mapping[str, str]) -> DkimSigner | None:
    """The profile's signer, its key read now (when a delivery starts); None when the
    profile does not sign. RunFault, a fault of the profile, when the key cannot be used:
    no unsigned message goes out instead."""
    if profile.dkim is None:
        return None
    try:
        return DkimSigner(profile.dkim, read_pem(profile.dkim, environ))
    except DkimKeyError as error:
        raise RunFault(f"SMTP profile {profile.id}: {error}") from None


def tls_context(profile: ProfileSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=profile.ca_file)
    if not profile.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def machine_fqdn() -> str:
    """This machine's fully qualified name, as the resolver gives it (looked up once)."""
    return socket.getfqdn()


def hello_name(profile: ProfileSettings, fqdn: str | None = None) -> str:
    """The EHLO name of runs and of ``smtp test`` alike (domain.md, Same conversation).

    The profile's ``helo_name``; else the machine's fully qualified name when it
    has a dot; else the domain of the profile's ``from_address``.
    """
    if profile.helo_name:
        return profile.helo_name
    name = (fqdn if fqdn is not None else machine_fqdn()).strip().rstrip(".")
    if "." in name and not name.startswith("localhost."):
        return name
    return profile.from_address.rpartition("@")[2] or "localhost.localdomain"


def auth_mechanism(offered: str) -> str | None:
    """The one mechanism msgrun logs in with, of those an EHLO AUTH line offers."""
    mechanisms = offered.upper().split()
    for mechanism in ("PLAIN", "LOGIN"):
        if mechanism in mechanisms:
            return mechanism
    return None


def no_auth_hint(profile: ProfileSettings, offers_starttls: bool) -> str:
    """What to do when the profile has a user name and the server offers no AUTH."""
    if offers_starttls and profile.security == "none":
        return "the server offers STARTTLS: it may offer AUTH only after it; use security starttls"
    return (
        "this server does not take a login here (some offer AUTH only after "
        "STARTTLS): check security and port"
    )


def profile_refusal(code: int, text: str, *, before_recipient: bool) -> bool:
    """A refusal of the connection or the sender rather than of a recipient.

    530 (authentication or STARTTLS required) anywhere; 5.7.0 or 5.7.1 at
    MAIL FROM or before any recipient.
    """
    if code == 530:
        return True
    return before_recipient and code >= 500 and ("5.7.0" in text or "5.7.1" in text)


class AuthGate:
    """One delivery's logins: the first connection logs in alone, a refusal is final.

    While no login has succeeded yet, connections log in one at a time; once
    the server has refused the credentials (535), no connection tries again
    (a wrong password costs one failed AUTH per run, not one per connection).
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.accepted = False
        self.refused: str | None = None


async def open_connection(
    profile: ProfileSettings, password: str | None, gate: AuthGate | None = None
) -> aiosmtplib.SMTP:
    """Connect, greet, secure and log in as ``smtp test`` does; run faults raise RunFault."""
    where = f"{profile.host}:{profile.port}"
    smtp = aiosmtplib.SMTP(
        hostname=profile.host,
        port=profile.port,
        use_tls=profile.security == "tls",
        start_tls=False,
        tls_context=tls_context(profile) if profile.security != "none" else None,
        timeout=profile.timeout_seconds,
        local_hostname=hello_name(profile),
    )
    try:
        await smtp.connect()
        await smtp.ehlo()
        if profile.security == "starttls":
            if not smtp.supports_extension("starttls"):
                raise RunFault(
                    f"{where} does not offer STARTTLS: use the port that offers it "
                    "(usually 587), or security tls on 465"
                )
            await smtp.starttls()
            await smtp.ehlo()
        if profile.username is not None and password is not None:
            if not smtp.supports_extension("auth"):
                raise RunFault(
                    f"{where} offers no AUTH for the user name {profile.username}: "
                    + no_auth_hint(profile, smtp.supports_extension("starttls"))
                )
            mechanism = auth_mechanism(smtp.esmtp_extensions.get("auth", ""))
            if mechanism is None:
                raise RunFault(
                    f"{where} offers AUTH {smtp.esmtp_extensions.get('auth', '')}: msgrun "
                    "logs in with PLAIN or LOGIN, which this server does not offer"
                )
            await _login(smtp, profile, password, mechanism, gate or AuthGate())
    except (RunFault, ConnectionFault):
        smtp.close()
        raise
    except aiosmtplib.SMTPResponseException as error:
        smtp.close()
        message = " ".join(error.message.split())
        if profile_refusal(error.code, message, before_recipient=True):
            raise RunFault(f"{where} refused the connection: {error.code} {message}") from None
        raise ConnectionFault(f"{where}: {error.code} {message}") from None
    except ssl.SSLError as error:
        smtp.close()
        raise RunFault(f"TLS with {where} failed: {error}") from None
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
        smtp.close()
        cause = error.__cause__ or error.__context__
        if isinstance(cause, ssl.SSLError):
            raise RunFault(f"TLS with {where} failed: {cause}") from None
        raise ConnectionFault(f"cannot connect to {where}: {describe(error)}") from None
    return smtp


async def _login(
    smtp: aiosmtplib.SMTP,
    profile: ProfileSettings,
    password: str,
    mechanism: str,
    gate: AuthGate,
) -> None:
    """Exactly one AUTH with ``mechanism``; a 5xx refusal is final for every connection."""
    assert profile.username is not None

    async def once() -> None:
        login = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        try:
            await login(profile.username or "", password)
        except aiosmtplib.SMTPAuthenticationError as error:
            text = f"{error.code} {' '.join(error.message.split())}"
            if error.code < 500:  # 454: a temporary failure, tried again later
                raise ConnectionFault(f"AUTH {mechanism}: {text}") from None
            gate.refused = (
                f"the server refused the credentials of {profile.username}: {text} "
                f"(AUTH {mechanism}; not tried again in this run)"
            )
            raise RunFault(gate.refused) from None

    if gate.refused is not None:
        raise RunFault(gate.refused)
    if gate.accepted:
        await once()
        return
    async with gate.lock:
        if gate.refused is not None:
            raise RunFault(gate.refused)
        await once()
        gate.accepted = True


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


# Addresses that are a bare addr-spec are put in angle brackets as they are; anything
# else (a display name, quotes, spaces) goes through aiosmtplib's own quoting.
PLAIN_ADDRESS = re.compile(r"[^\s<>()\"]+")


def angle_address(address: str, encoding: str) -> bytes:
    """``<address>`` for MAIL FROM and RCPT TO, as aiosmtplib would quote it.

    aiosmtplib parses every address with ``email.utils`` on every command (a
    fifth of a message's cost); a stored address is an addr-spec already.
    """
    if PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode(encoding) + b">"
    return quote_address(address).encode(encoding)


# The end of a message's data (RFC 5321 §4.5.2: line endings CRLF, a leading dot doubled).
LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")
LEADING_DOT = re.compile(rb"(?m)^\.")


def data_payload(data: bytes) -> bytes:
    """A message's data as it goes on the wire after DATA, the final ``.`` included."""
    data = LINE_ENDINGS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return LEADING_DOT.sub(b"..", data) + b".\r\n"


async def send_data(smtp: aiosmtplib.SMTP, data: bytes) -> Reply:
    """DATA, the message, the final ``.``, and the server's reply to it.

    Up to the final ``.`` a fault is aiosmtplib's (SMTPServerDisconnected, a
    timeout: the message did not reach the server, ConnectionFault for the
    caller). Once it is written, the wait for the reply is at least
    ``policy.FINAL_REPLY_SECONDS`` (not the profile's timeout, which aiosmtplib's
    own ``data`` applies: content filters are slow), and a connection lost then
    raises ``LostAfterData``. A refusal of the data raises SMTPDataError.
    """
    response = await smtp.execute_command(b"DATA")
    if response.code != 354:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    protocol.write(data_payload(data))
    try:
        response = await protocol.read_response(timeout=final_reply_seconds(smtp.timeout or 0.0))
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
        smtp.close()
        raise LostAfterData(
            "the connection was lost after the message's data and before the server's "
            f"reply ({describe(error)}): it may have been delivered, so it is not sent "
            "again unless asked (msgrun run restart RUN --resend-unknown)"
        ) from None
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return Reply(response.code, response.message)


async def send(smtp: aiosmtplib.SMTP, envelope: Envelope) -> Reply:
    """MAIL FROM, RCPT TO, DATA on an open connection.

    A refusal (4xx/5xx) is returned as a Reply and the connection is reset
    for the next message; a connection dropped before the end of the data
    raises ConnectionFault, one lost after it LostAfterData (``send_data``); a
    refusal of the profile rather than the recipient (``profile_refusal``)
    raises RunFault.
    """
    stage = "MAIL FROM"
    try:
        options = [b"SMTPUTF8"] if envelope.smtputf8 else []
        if envelope.smtputf8 and not smtp.supports_extension("smtputf8"):
            # msgrun's own verdict, not the server's words: said so ("msgrun: …").
            return Reply(553, "msgrun: the address needs SMTPUTF8, which the server does not offer")
        encoding = "utf-8" if envelope.smtputf8 else "ascii"
        # The commands aiosmtplib's mail() and rcpt() send, and the errors they raise.
        response = await smtp.execute_command(
            b"MAIL", b"FROM:" + angle_address(envelope.sender, encoding), *options
        )
        if response.code != 250:
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, envelope.sender)
        stage = "RCPT TO"
        response = await smtp.execute_command(
            b"RCPT", b"TO:" + angle_address(envelope.recipient, encoding)
        )
        if response.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(
                response.code, response.message, envelope.recipient
            )
        stage = "DATA"
        return await send_data(smtp, envelope.data)
    except aiosmtplib.SMTPServerDisconnected as error:
        raise ConnectionFault(f"the server closed the connection: {describe(error)}") from None
    except aiosmtplib.SMTPResponseException as error:
        message = " ".join(error.message.split())
        if error.code == 421:
            smtp.close()
            raise ConnectionFault(f"421 {message}") from None
        if profile_refusal(error.code, message, before_recipient=stage == "MAIL FROM"):
            smtp.close()
            raise RunFault(
                f"the server refused {stage} from {envelope.sender}: {error.code} {message}"
            ) from None
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()
        return Reply(error.code, message)
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
        smtp.close()
        raise ConnectionFault(describe(error)) from None


class RateLimit:
    """The profile's rate, in turns: one every 1/rate seconds (this process's share of it).

    A window of messages takes one turn for its first message (so that the lines
    of a delivery take theirs in turn, not all at once); a line spaces the rest
    (``lines.Pace``).
    """

    def __init__(self, rate_per_second: float | None) -> None:
        self.rate = rate_per_second
        self.interval = 1.0 / rate_per_second if rate_per_second else 0.0
        self.next_slot = 0.0

    def share(self, fraction: float) -> None:
        """This process's part of the profile's rate (its connections over the profile's)."""
        if self.rate:
            self.interval = 1.0 / (self.rate * fraction) if fraction > 0 else float("inf")

    def turn(self) -> float:
        """Take the next turn; seconds until it comes (0: now)."""
        if not self.interval:
            return 0.0
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        return slot - now
