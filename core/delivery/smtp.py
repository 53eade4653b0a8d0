"""The SMTP side of delivery: connections, sending one message, sorting replies.

Every network call has the profile's timeout. Replies are sorted into what
the run does with them: sent (2xx), try again later (4xx, a dropped or
refused connection), failed (5xx), or a fault of the whole run (credentials
refused, TLS failure, no password): one reason for the run instead of one
failure per recipient.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiosmtplib

from core.delivery.message import Envelope
from core.passwords import find_password, how_to_provide, missing


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    id: str
    host: str
    port: int
    security: str
    username: str | None
    password_env: str | None
    from_address: str
    from_name: str | None
    max_connections: int
    rate_per_second: float | None
    tls_verify: bool
    ca_file: str | None
    timeout_seconds: float

    @classmethod
    def from_row(cls, row: Any) -> ProfileSettings:
        return cls(
            id=row.id,
            host=row.host,
            port=row.port,
            security=row.security,
            username=row.username,
            password_env=row.password_env,
            from_address=row.from_address,
            from_name=row.from_name,
            max_connections=row.max_connections,
            rate_per_second=row.rate_per_second,
            tls_verify=row.tls_verify,
            ca_file=row.ca_file,
            timeout_seconds=row.timeout_seconds,
        )


class RunFault(Exception):
    """Nothing can be sent with this profile until a person fixes it."""


class ConnectionFault(Exception):
    """The connection failed or dropped; the message may be tried again."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def hard_bounce(self) -> bool:
        """The mailbox does not exist (5.1.1)."""
        return self.code >= 500 and (
            "5.1.1" in self.text or (self.code == 550 and "does not exist" in self.text.lower())
        )


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


def tls_context(profile: ProfileSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=profile.ca_file)
    if not profile.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def open_connection(profile: ProfileSettings, password: str | None) -> aiosmtplib.SMTP:
    """Connect, secure and authenticate; faults of the run raise RunFault."""
    smtp = aiosmtplib.SMTP(
        hostname=profile.host,
        port=profile.port,
        use_tls=profile.security == "tls",
        start_tls=profile.security == "starttls",
        tls_context=tls_context(profile) if profile.security != "none" else None,
        timeout=profile.timeout_seconds,
    )
    try:
        await smtp.connect()
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()  # so that the server's extensions are known before sending
        if profile.username is not None and password is not None:
            await smtp.login(profile.username, password)
    except aiosmtplib.SMTPAuthenticationError as error:
        smtp.close()
        raise RunFault(
            f"the server refused the credentials of {profile.username}: "
            f"{error.code} {error.message}"
        ) from None
    except ssl.SSLError as error:
        smtp.close()
        raise RunFault(f"TLS with {profile.host}:{profile.port} failed: {error}") from None
    except aiosmtplib.SMTPNotSupported as error:
        smtp.close()
        raise RunFault(f"{profile.host}:{profile.port}: {error}") from None
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
        smtp.close()
        cause = error.__cause__ or error.__context__
        if isinstance(cause, ssl.SSLError):
            raise RunFault(f"TLS with {profile.host}:{profile.port} failed: {cause}") from None
        raise ConnectionFault(
            f"cannot connect to {profile.host}:{profile.port}: {describe(error)}"
        ) from None
    return smtp


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


async def send(smtp: aiosmtplib.SMTP, envelope: Envelope) -> Reply:
    """MAIL FROM, RCPT TO, DATA on an open connection.

    A refusal (4xx/5xx) is returned as a Reply and the connection is reset
    for the next message; a dropped connection raises ConnectionFault.
    """
    try:
        options = ["SMTPUTF8"] if envelope.smtputf8 else []
        if envelope.smtputf8 and not smtp.supports_extension("smtputf8"):
            # msgrun's own verdict, not the server's words: said so ("msgrun: …").
            return Reply(553, "msgrun: the address needs SMTPUTF8, which the server does not offer")
        encoding = "utf-8" if envelope.smtputf8 else "ascii"
        await smtp.mail(envelope.sender, options=options, encoding=encoding)
        await smtp.rcpt(envelope.recipient, encoding=encoding)
        response = await smtp.data(envelope.data)
        return Reply(response.code, response.message)
    except aiosmtplib.SMTPServerDisconnected as error:
        raise ConnectionFault(f"the server closed the connection: {describe(error)}") from None
    except aiosmtplib.SMTPResponseException as error:
        if error.code == 421:
            smtp.close()
            raise ConnectionFault(f"421 {' '.join(error.message.split())}") from None
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()
        return Reply(error.code, " ".join(error.message.split()))
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
        smtp.close()
        raise ConnectionFault(describe(error)) from None


class RateLimit:
    """A smooth limit: one message every 1/rate seconds, never in bursts."""

    def __init__(self, rate_per_second: float | None) -> None:
        self.rate = rate_per_second
        self.interval = 1.0 / rate_per_second if rate_per_second else 0.0
        self.next_slot = 0.0

    def share(self, fraction: float) -> None:
        """This process's part of the profile's rate (its connections over the profile's)."""
        if self.rate:
            self.interval = 1.0 / (self.rate * fraction) if fraction > 0 else float("inf")

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
