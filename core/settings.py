"""Every ``MSGRUN_*`` environment variable msgrun reads: read, parsed and checked here.

One function per variable takes the environment (``os.environ`` unless given) and
returns a typed value, or raises SettingError naming the variable, the value and what
is allowed: a value outside what msgrun promises is refused, never quietly replaced by
another. Blank (unset, or only spaces) always means the default. ``check`` reads them
all, so that a command refuses a bad environment before it does anything (exit 2).
The manual lists the same variables (docs/configuration.md).

This module imports nothing of msgrun's: every layer may read its settings here.
Password variables (a profile's ``password_env``, ``MSGRUN_IMAP_PASSWORD``) are not
settings: they hold secrets, read where they are used (``core.passwords``).
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

DATABASE: Final = "MSGRUN_DB"
LEASE: Final = "MSGRUN_LEASE_SECONDS"
SENDER_PROCESSES: Final = "MSGRUN_SENDER_PROCESSES"
DNS_SERVER: Final = "MSGRUN_DNS_SERVER"
KEYRING: Final = "MSGRUN_KEYRING"
BOUNCE_SOURCES: Final = "MSGRUN_BOUNCE_SOURCES"
IMAP_CAFILE: Final = "MSGRUN_IMAP_CAFILE"
DEBUG: Final = "MSGRUN_DEBUG"
DIE_WITH: Final = "MSGRUN_DIE_WITH"
# Not a setting but a password variable's name (see the module's docstring).
IMAP_PASSWORD: Final = "MSGRUN_IMAP_PASSWORD"

DEFAULT_DATABASE_URL: Final = "sqlite:///msgrun.db"
# Leases: renewed a few times a lease; lapse at most 15 s after the holder dies.
LEASE_SECONDS: Final = 12.0
LEASE_RANGE: Final = (1.0, 15.0)
DNS_PORT: Final = 53
ON_WORDS: Final = ("1", "yes", "true", "on")
OFF_WORDS: Final = ("0", "no", "false", "off")


class SettingError(ValueError):
    """An environment variable's value is not one msgrun accepts (bad usage: exit 2)."""

    def __init__(self, variable: str, value: str, problem: str) -> None:
        super().__init__(f"{variable}={value!r} {problem}")
        self.variable = variable
        self.value = value


def _raw(environ: Mapping[str, str], variable: str) -> str:
    """The variable's value without surrounding spaces; '' when unset."""
    return environ.get(variable, "").strip()


def _switch(environ: Mapping[str, str], variable: str) -> bool:
    raw = _raw(environ, variable)
    if not raw or raw.lower() in OFF_WORDS:
        return False
    if raw.lower() in ON_WORDS:
        return True
    raise SettingError(
        variable,
        raw,
        f"is not on or off: give {', '.join(ON_WORDS)} (on) or {', '.join(OFF_WORDS)} "
        "(off; unset: off)",
    )


def database_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """MSGRUN_DB: the database URL when ``--db`` is not given; None when unset.

    Only the kind of URL is checked here (a SQLite or PostgreSQL URL); the rest
    (a file named, the driver) when the database is opened, as for ``--db``.
    """
    raw = _raw(environ, DATABASE)
    if not raw:
        return None
    scheme, separator, _ = raw.partition("://")
    if not separator or not scheme.lower().startswith(("sqlite", "postgres")):
        raise SettingError(
            DATABASE,
            raw,
            "is not a database URL: give sqlite:///PATH or "
            f"postgresql+psycopg://USER@HOST:PORT/DB (unset: {DEFAULT_DATABASE_URL})",
        )
    return raw


def lease_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """MSGRUN_LEASE_SECONDS: the lease length, 1 to 15 s; 12 s when unset.

    A longer lease would leave a dead delivery unseen for longer than msgrun
    promises; a shorter one would have the lease lapse between renewals.
    """
    raw = _raw(environ, LEASE)
    if not raw:
        return LEASE_SECONDS
    low, high = LEASE_RANGE
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN too
        raise SettingError(
            LEASE,
            raw,
            f"is not a number of seconds from {low:g} to {high:g} (unset: {LEASE_SECONDS:g})",
        )
    return value


def sender_processes(environ: Mapping[str, str] = os.environ) -> int | None:
    """MSGRUN_SENDER_PROCESSES: how many sender processes a delivery starts (0: none);
    None when unset (msgrun decides)."""
    raw = _raw(environ, SENDER_PROCESSES)
    if not raw:
        return None
    if not raw.isdigit():
        raise SettingError(
            SENDER_PROCESSES,
            raw,
            "is not a number of processes (0 or more; unset, msgrun decides)",
        )
    return int(raw)


class DnsServer(NamedTuple):
    host: str  # an IP address
    port: int

    def describe(self) -> str:
        """As it would be written: ``10.0.0.53``, ``10.0.0.53:5353``, ``[::1]:5353``."""
        if self.port == DNS_PORT:
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def dns_server(environ: Mapping[str, str] = os.environ) -> DnsServer | None:
    """MSGRUN_DNS_SERVER: the DNS server of ``smtp test``'s SPF, DKIM and DMARC steps,
    ``IP``, ``IP:PORT`` or ``[IPv6]:PORT``; None when unset (the system's resolver)."""
    raw = _raw(environ, DNS_SERVER)
    if not raw:
        return None
    host, port = raw, str(DNS_PORT)
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest:
            port = rest.removeprefix(":") if rest.startswith(":") else "?"
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    usage = "give a DNS server's IP address, optionally with :PORT (e.g. 127.0.0.1:5353)"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise SettingError(
            DNS_SERVER, raw, f"is not a DNS server: {host!r} is not an IP address; {usage}"
        ) from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SettingError(
            DNS_SERVER, raw, f"is not a DNS server: {port!r} is not a port (1-65535); {usage}"
        )
    return DnsServer(host, int(port))


def keyring_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """MSGRUN_KEYRING: whether a password variable that is not set is looked up in the
    OS keyring; off when unset (the keyring is never asked)."""
    return _switch(environ, KEYRING)


def bounce_sources(environ: Mapping[str, str] = os.environ) -> list[str]:
    """MSGRUN_BOUNCE_SOURCES: the report sources ``msgrun worker`` reads, separated by
    spaces; [] when unset. Whether each exists is checked when it is read
    (``core.bounces.store.configured_sources``)."""
    raw = _raw(environ, BOUNCE_SOURCES)
    specs = raw.split()
    if "-" in specs:
        raise SettingError(
            BOUNCE_SOURCES,
            raw,
            "names - (standard input), which a worker cannot read: give Maildirs, message "
            "files or imap:// and imaps:// URLs, separated by spaces",
        )
    return specs


def imap_cafile(environ: Mapping[str, str] = os.environ) -> Path | None:
    """MSGRUN_IMAP_CAFILE: a PEM file of CA certificates trusted, besides the system's,
    for ``imaps://`` report sources; None when unset."""
    raw = _raw(environ, IMAP_CAFILE)
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise SettingError(
            IMAP_CAFILE,
            raw,
            "is not a file: give the path of a PEM file of CA certificates (unset: the "
            "system's only)",
        )
    return path


def debug(environ: Mapping[str, str] = os.environ) -> bool:
    """MSGRUN_DEBUG: whether an internal error prints its traceback; off when unset."""
    return _switch(environ, DEBUG)


def die_with(environ: Mapping[str, str] = os.environ) -> int | None:
    """MSGRUN_DIE_WITH (set by msgrun for the delivering processes the demo starts):
    the process id whose death ends this process; None when unset."""
    raw = _raw(environ, DIE_WITH)
    if not raw:
        return None
    if not raw.isdigit() or int(raw) == 0:
        raise SettingError(
            DIE_WITH, raw, "is not a process id (set by msgrun itself; leave it unset)"
        )
    return int(raw)


@dataclass(frozen=True)
class Setting:
    variable: str
    read: Callable[[Mapping[str, str]], object]


# Every setting, in the manual's order.
SETTINGS: Final = (
    Setting(DATABASE, database_url),
    Setting(KEYRING, keyring_enabled),
    Setting(DEBUG, debug),
    Setting(SENDER_PROCESSES, sender_processes),
    Setting(LEASE, lease_seconds),
    Setting(DNS_SERVER, dns_server),
    Setting(BOUNCE_SOURCES, bounce_sources),
    Setting(IMAP_CAFILE, imap_cafile),
    Setting(DIE_WITH, die_with),
)


def check(environ: Mapping[str, str] = os.environ) -> None:
    """Read every setting: SettingError for the first whose value is refused."""
    for setting in SETTINGS:
        setting.read(environ)
