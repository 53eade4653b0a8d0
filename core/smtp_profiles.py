"""SMTP profiles as an operator sees and edits them: the list, and an edit checked before saving.

Only the connection settings a person fixes by hand are editable here: host,
port, security and user name. An edit is checked as a whole; when anything is
wrong, nothing is saved and every problem is named.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select, update

from core.delivery.smtp import ProfileSettings
from core.storage.database import Database
from core.storage.models import SmtpProfile, table_of
from core.vocabulary import SECURITY_MODES


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
