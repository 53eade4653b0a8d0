"""The IMAP report source against a real Dovecot on loopback (fixtures/imap_server.py).

Skipped where Dovecot's IMAP server is not installed (scripts/setup installs it as
root), except in CI, where it is required."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.bounces import classify
from core.bounces.sources import ImapSource, SourceUnavailable, check_source
from fixtures.imap_server import DovecotImap, unavailable_reason

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imap() -> Iterator[DovecotImap]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with DovecotImap() as server:
        yield server


def source(imap: DovecotImap, password: str | None = None) -> ImapSource:
    env = {"MSGRUN_IMAP_PASSWORD": password or imap.password}
    found = check_source(imap.url("INBOX"), env)
    assert isinstance(found, ImapSource)
    return found


def test_reports_flagged_seen_and_nothing_else_touched(imap: DovecotImap) -> None:
    names = {
        imap.deliver((SAMPLES / "postfix_dsn.eml").read_bytes()): "S",
        imap.deliver((SAMPLES / "person_reply.eml").read_bytes()): "",
        imap.deliver((SAMPLES / "ooo_de.eml").read_bytes()): "S",
        imap.deliver((SAMPLES / "arf_abuse.eml").read_bytes()): "S",
    }
    read = []
    for message in source(imap).read():
        report = classify(message.raw)
        read.append((message.source, report.kind.value))
        if report.kind.is_report:
            message.mark_read()
    assert [kind for _, kind in read] == ["dsn", "not_report", "auto_reply", "complaint"]
    assert all(name.startswith("INBOX/") and name[6:].isdigit() for name, _ in read)
    flags = imap.flags()
    assert {name: flags[name] for name in names} == names
    # Reading again sees the same messages (fetching never sets \Seen itself).
    assert len(list(source(imap).read())) == 4


def test_login_refused_and_server_unreachable(imap: DovecotImap) -> None:
    with pytest.raises(SourceUnavailable, match=r"refused the login of bounces@mail\.example"):
        list(source(imap, password="wrong").read())
    env = {"MSGRUN_IMAP_PASSWORD": "x"}
    closed = check_source(f"imap://u@127.0.0.1:{_closed_port()}/INBOX", env)
    with pytest.raises(SourceUnavailable, match="cannot reach the IMAP server"):
        list(closed.read())
    missing = check_source(imap.url("Nowhere"), {"MSGRUN_IMAP_PASSWORD": imap.password})
    with pytest.raises(SourceUnavailable, match="no folder 'Nowhere'"):
        list(missing.read())


def _closed_port() -> int:
    from fixtures.smtp_servers import free_port

    return free_port()
