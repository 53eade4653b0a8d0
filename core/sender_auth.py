"""Sender authentication in ``msgrun smtp test`` (inbox.md): the ``spf``, ``dkim`` and
``dmarc`` steps, looked up in DNS (dnspython) after the SMTP steps.

DNS goes through the system's resolver, or to ``MSGRUN_DNS_SERVER=HOST[:PORT]`` when
set (split-horizon networks, and the tests' own server on loopback). The three steps
together take at most the profile's ``timeout_seconds``. A look-up that times out, is
refused or gets SERVFAIL fails its step saying so; NXDOMAIN is an answer (nothing
published). Domains reserved for testing (``.test``, ``.example``, ``example.com`` …) are
not looked up: the steps pass and say so.
"""

from __future__ import annotations

import base64
import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from core import settings
from core.dkim_keys import DkimKeyError, private_key, public_base64, public_record, read_pem
from core.sender_domains import aligned, domain_of, is_reserved, organisational_domain
from core.smtp_profiles import ProfileSettings

STEPS = ("spf", "dkim", "dmarc")
MAX_SPF_LOOKUPS = 10
NO_DMARC = "no DMARC record: Gmail and Yahoo require one of senders of 5,000 messages a day"


@dataclass
class AuthStep:
    step: str
    ok: bool
    detail: str
    hint: str | None = None
    warning: str | None = None


# How a step on a domain reserved for testing ends its detail: it passes, unchecked.
NOT_LOOKED_UP = "not looked up"


class LookupFailed(Exception):
    """The DNS server did not answer (timeout, refused, SERVFAIL): no answer at all."""


class Dns:
    """TXT look-ups within one deadline, through MSGRUN_DNS_SERVER when it is set."""

    def __init__(self, environ: Mapping[str, str], seconds: float) -> None:
        server = settings.dns_server(environ)
        if server is not None:
            self.resolver = dns.asyncresolver.Resolver(configure=False)
            self.resolver.nameservers = [server.host]
            self.resolver.port = server.port
        else:
            self.resolver = dns.asyncresolver.Resolver()
        self.deadline = time.monotonic() + seconds
        self.server = "the system's resolver" if server is None else server.describe()

    async def txt(self, name: str) -> list[str]:
        """The TXT records at ``name``, each record's strings joined; [] for NXDOMAIN or
        no TXT record. LookupFailed when the server gives no answer in time."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise LookupFailed(f"no time left to look up {name} (the profile's timeout)")
        try:
            answer = await self.resolver.resolve(name, "TXT", lifetime=remaining)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise LookupFailed(f"the look-up of {name} timed out ({self.server})") from None
        except dns.resolver.NoNameservers:
            raise LookupFailed(
                f"the look-up of {name} failed: SERVFAIL or refused ({self.server})"
            ) from None
        except dns.exception.DNSException as error:
            raise LookupFailed(f"the look-up of {name} failed: {error}") from None
        return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


def envelope_domain(profile: ProfileSettings) -> str:
    return domain_of(profile.bounce_address or profile.from_address)


# -- SPF ------------------------------------------------------------------------------

LOOKUP_MECHANISMS = ("include", "a", "mx", "ptr", "exists")
MECHANISMS = ("all", "ip4", "ip6", *LOOKUP_MECHANISMS)


class SpfError(Exception):
    """A permanent error of RFC 7208 (the record does not parse, or too many look-ups)."""


def spf_records(records: list[str]) -> list[str]:
    return [r for r in records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]


async def _count_lookups(dns_: Dns, domain: str, record: str, used: list[int]) -> None:
    """Parse ``record`` and count its DNS look-ups (includes and redirects followed);
    SpfError for a record that does not parse or needs more than 10."""
    follow: list[str] = []
    for term in record.split()[1:]:
        name, _, value = term.partition("=")
        if _ and "=" in term and ":" not in name and "/" not in name:
            if name.lower() == "redirect":
                used[0] += 1
                follow.append(value)
            elif not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise SpfError(f"{term!r} is not a valid term")
            continue
        mechanism = term.lstrip("+-~?")
        kind, _, argument = mechanism.partition(":")
        kind = kind.split("/", 1)[0].lower()
        if kind not in MECHANISMS:
            raise SpfError(f"unknown mechanism {term!r}")
        if kind in ("ip4", "ip6"):
            try:
                ipaddress.ip_network(argument, strict=False)
            except ValueError:
                raise SpfError(f"{term!r} is not a valid {kind} network") from None
        if kind in ("include", "exists") and not argument:
            raise SpfError(f"{term!r} needs a domain")
        if kind in LOOKUP_MECHANISMS:
            used[0] += 1
        if kind == "include":
            follow.append(argument)
    if used[0] > MAX_SPF_LOOKUPS:
        raise SpfError(f"it needs more than {MAX_SPF_LOOKUPS} DNS look-ups")
    for target in follow:
        found = spf_records(await dns_.txt(target))
        if len(found) != 1:
            raise SpfError(f"{target} (included from {domain}) has {len(found)} SPF records")
        await _count_lookups(dns_, target, found[0], used)


async def spf_step(profile: ProfileSettings, dns_: Dns) -> AuthStep:
    domain = envelope_domain(profile)
    from_domain = domain_of(profile.from_address)
    warning = None
    if profile.bounce_address and not aligned(domain, from_domain):
        warning = (
            f"the bounce_address domain {domain} does not align with the From domain "
            f"{from_domain}: SPF can never align for DMARC (use a bounce address on "
            f"{organisational_domain(from_domain) or from_domain})"
        )
    suggested = (
        f"v=spf1 ip4:{profile.host} -all"
        if _is_ipv4(profile.host)
        else f"v=spf1 a:{profile.host} -all"
    )
    records = spf_records(await dns_.txt(domain))
    if not records:
        return AuthStep(
            "spf",
            False,
            f"no SPF record at {domain}",
            f'publish one TXT record at {domain}: "{suggested}" (or the include: your mail '
            "provider gives)",
            warning,
        )
    if len(records) > 1:
        return AuthStep(
            "spf",
            False,
            f"{len(records)} SPF records at {domain}: " + " | ".join(records),
            "RFC 7208 permerror: merge them into one TXT record",
            warning,
        )
    try:
        used = [0]
        await _count_lookups(dns_, domain, records[0], used)
    except SpfError as error:
        return AuthStep(
            "spf",
            False,
            f"{domain}: {records[0]} — {error}",
            "RFC 7208 permerror: fix the record (at most 10 include/a/mx/ptr/exists/redirect)",
            warning,
        )
    return AuthStep("spf", True, f"{domain}: {records[0]}", None, warning)


def _is_ipv4(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    except ValueError:
        return False


# -- DKIM ------------------------------------------------------------------------------


def tags(record: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            found[name.strip().lower()] = "".join(value.split())
    return found


async def dkim_step(profile: ProfileSettings, dns_: Dns, environ: Mapping[str, str]) -> AuthStep:
    dkim = profile.dkim
    if dkim is None:
        detail = "msgrun does not sign this profile's messages"
        if profile.server_signs_dkim:
            detail += " (the profile says the server signs them)"
        return AuthStep("dkim", True, detail)
    try:
        key = private_key(read_pem(dkim, environ), dkim)
    except DkimKeyError as error:
        return AuthStep(
            "dkim",
            False,
            f"the profile's key cannot be read: {error}",
            "runs on this profile fail until the key can be read",
        )
    expected = public_record(key)
    publish = f'publish a TXT record at {dkim.record_name}: "{expected}"'
    records = await dns_.txt(dkim.record_name)
    if not records:
        return AuthStep("dkim", False, f"no DKIM record at {dkim.record_name}", publish)
    record = records[0]
    found = tags(record)
    if found.get("v", "DKIM1") != "DKIM1" or "p" not in found or found.get("k", "rsa") != "rsa":
        return AuthStep(
            "dkim",
            False,
            f"{dkim.record_name}: {record} is not a DKIM key record",
            publish,
        )
    try:
        published = base64.b64decode(found["p"], validate=True)
    except ValueError:
        published = b""
    if published != base64.b64decode(public_base64(key)):
        return AuthStep(
            "dkim",
            False,
            f"{dkim.record_name}: {record} — its p= is not the public half of the profile's key",
            publish.replace("publish a", "replace it with the"),
        )
    return AuthStep("dkim", True, f"{dkim.record_name}: {record}")


# -- DMARC ------------------------------------------------------------------------------


async def dmarc_step(profile: ProfileSettings, dns_: Dns) -> AuthStep:
    from_domain = domain_of(profile.from_address)
    organisation = organisational_domain(from_domain) or from_domain
    where = f"_dmarc.{from_domain}"
    records = [r for r in await dns_.txt(where) if tags(r).get("v") == "DMARC1"]
    subdomain = False
    if not records and organisation != from_domain:
        where = f"_dmarc.{organisation}"
        records = [r for r in await dns_.txt(where) if tags(r).get("v") == "DMARC1"]
        subdomain = True
    if not records:
        return AuthStep("dmarc", True, f"no DMARC record at _dmarc.{from_domain}", None, NO_DMARC)
    record = records[0]
    found = tags(record)
    policy = (found.get("sp", "") if subdomain else "") or found.get("p", "none")
    policy = policy.lower()
    envelope = envelope_domain(profile)
    spf_aligned = aligned(envelope, from_domain, strict=found.get("aspf", "r").lower() == "s")
    dkim_aligned = profile.dkim is not None and aligned(
        profile.dkim.domain, from_domain, strict=found.get("adkim", "r").lower() == "s"
    )
    detail = f"{where}: {record} (policy {policy})"
    if policy not in ("quarantine", "reject") or spf_aligned or dkim_aligned:
        how = [name for name, yes in (("SPF", spf_aligned), ("DKIM", dkim_aligned)) if yes]
        return AuthStep(
            "dmarc", True, detail + (f"; aligned by {' and '.join(how)}" if how else "")
        )
    if profile.server_signs_dkim:
        return AuthStep(
            "dmarc",
            True,
            detail + "; relied on the server signing with an aligned key of its own "
            "(server_signs_dkim)",
        )
    return AuthStep(
        "dmarc",
        False,
        f"{detail}; the messages align neither by SPF (envelope domain {envelope}) nor by "
        "DKIM (the profile does not sign aligned)",
        f"set up either alignment: DKIM — give the profile a dkim with a domain on "
        f"{organisation} and publish its key; or SPF — a bounce_address on {organisation} "
        "with an SPF record there",
    )


# -- the three steps --------------------------------------------------------------------


async def sender_auth_steps(
    profile: ProfileSettings,
    environ: Mapping[str, str],
    on_step: Callable[[AuthStep, float], None] | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> list[AuthStep]:
    """The spf, dkim and dmarc steps, in this order; each reported to ``on_step`` with
    the milliseconds it took."""
    from_domain = domain_of(profile.from_address)
    dns_ = Dns(environ, profile.timeout_seconds)
    reserved = [d for d in {from_domain, envelope_domain(profile)} if is_reserved(d)]
    work: list[tuple[str, Callable[[], Awaitable[AuthStep]]]] = [
        ("spf", lambda: spf_step(profile, dns_)),
        ("dkim", lambda: dkim_step(profile, dns_, environ)),
        ("dmarc", lambda: dmarc_step(profile, dns_)),
    ]
    steps: list[AuthStep] = []
    for name, run in work:
        started = timer()
        if reserved:
            step = AuthStep(
                name,
                True,
                f"{', '.join(sorted(reserved))} is reserved for testing or local use: "
                + NOT_LOOKED_UP,
            )
        else:
            try:
                step = await run()
            except LookupFailed as error:
                step = AuthStep(name, False, str(error), "check the DNS server, then test again")
        steps.append(step)
        if on_step is not None:
            on_step(step, (timer() - started) * 1000)
    return steps
