"""SMTP profiles: their settings as every process reads them (``ProfileSettings``), and as
an operator sees and edits them: the list, and an edit checked before saving.

Only the connection settings a person fixes by hand are editable here: host,
port, security and user name. An edit is checked as a whole; when anything is
wrong, nothing is saved and every problem is named.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from core.dkim_keys import DkimSettings
from core.storage.database import Database
from core.storage.models import SmtpProfile, table_of
from core.vocabulary import SECURITY_MODES


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
    # Optional (None: the defaults of domain.md): see hello_name and retry_policy.
    helo_name: str | None = None
    retry_after_seconds: tuple[float, ...] | None = None
    retry_for_seconds: float | None = None
    bounce_address: str | None = None
    # The largest message the profile's server takes (attachments.md); None: no limit set.
    max_message_bytes: int | None = None
    reply_to: str | None = None
    dkim: DkimSettings | None = None
    server_signs_dkim: bool = False

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
            helo_name=row.helo_name,
            retry_after_seconds=(
                tuple(float(d) for d in row.retry_after_seconds)
                if row.retry_after_seconds
                else None
            ),
            retry_for_seconds=row.retry_for_seconds,
            bounce_address=row.bounce_address,
            max_message_bytes=getattr(row, "max_message_bytes", None),
            reply_to=row.reply_to,
            dkim=DkimSettings.from_json(row.dkim),
            server_signs_dkim=bool(row.server_signs_dkim),
        )


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    settings: ProfileSettings
    last_test_at: datetime | None
    last_test_ok: bool | None
    last_test_ok_at: datetime | None


def list_profiles(database: Database) -> list[ProfileSummary]:
    table = table_of(SmtpProfile)
    with database.connect() as connection:
        rows = connection.execute(select(table).order_by(table.c.id)).all()
    return [
        ProfileSummary(
            ProfileSettings.from_row(row), row.last_test_at, row.last_test_ok, row.last_test_ok_at
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class ProfileEdit:
    """The form's fields as typed: text, checked by ``problems``."""

    host: str
    port: str
    security: str
    username: str

    @classmethod
    def of(cls, settings: ProfileSettings) -> ProfileEdit:
        return cls(settings.host, str(settings.port), settings.security, settings.username or "")

    def problems(self) -> list[str]:
        found: list[str] = []
        host = self.host.strip()
        if not host:
            found.append("host: empty")
        elif any(c.isspace() for c in host) or "/" in host:
            found.append(f"host: {host!r} is not a host name or address")
        port = self.port.strip()
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            found.append(f"port: {port!r} is not a number from 1 to 65535")
        if self.security not in SECURITY_MODES:
            found.append(f"security: {self.security!r} is not one of {', '.join(SECURITY_MODES)}")
        if any(c.isspace() for c in self.username.strip()):
            found.append(f"user: {self.username.strip()!r} contains a space")
        return found

    def applied_to(self, settings: ProfileSettings) -> ProfileSettings:
        """The profile as it would be with this edit; ValueError naming every problem."""
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return replace(
            settings,
            host=self.host.strip(),
            port=int(self.port.strip()),
            security=self.security,
            username=self.username.strip() or None,
        )


def save_edit(database: Database, profile_id: str, edit: ProfileEdit) -> ProfileSettings:
    """Store an edit (ValueError, and nothing saved, when it has problems)."""
    table = table_of(SmtpProfile)
    with database.connect() as connection:
        row = connection.execute(select(table).where(table.c.id == profile_id)).first()
        if row is None:
            raise ValueError(f"unknown SMTP profile {profile_id!r}")
        changed = edit.applied_to(ProfileSettings.from_row(row))
        connection.execute(
            update(table)
            .where(table.c.id == profile_id)
            .values(
                host=changed.host,
                port=changed.port,
                security=changed.security,
                username=changed.username,
            )
        )
    return changed
