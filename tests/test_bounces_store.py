"""Reports stored once, tied to their recipients, suppressions from hard bounces and
complaints (after-sending.md), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import func, select

from core.bounces.sources import FileSource, MaildirSource, SourceMessage, StdinSource
from core.bounces.store import ReadSummary, read_source, record_message
from core.messages.verp import verp_address, verp_token
from core.storage import Database
from core.storage.models import BounceReport, RecipientOutcome, Suppression
from tests.bounce_support import NOW, SAMPLES, arf_abuse, postfix_dsn, sent_run


def read(
    db: Database, *raws: bytes, envelope_to: str | None = None, stdin: bool = False
) -> tuple[ReadSummary, list[str]]:
    summary = ReadSummary()
    marked: list[str] = []
    for i, raw in enumerate(raws):
        name = "-" if stdin else f"m{i}"
        message = SourceMessage(name, raw, lambda name=name: marked.append(name))
        record_message(db, message, NOW, summary, envelope_to=envelope_to, keep_everything=stdin)
    return summary, marked


def outcomes(db: Database) -> list[tuple[int | None, str, str | None, str | None, str | None]]:
    with db.session() as session:
        return [
            (o.recipient_id, o.type, o.bounce_class, o.status, o.matched_by)
            for o in session.scalars(select(RecipientOutcome).order_by(RecipientOutcome.id))
        ]


def suppressions(db: Database) -> dict[str, tuple[str, date, int | None, int | None, str | None]]:
    with db.session() as session:
        return {
            s.address: (s.reason, s.since, s.report_id, s.run_id, s.detail)
            for s in session.scalars(select(Suppression))
        }


def test_matched_by_message_id_suppresses_and_reads_once(db: Database) -> None:
    run_id, rows = sent_run(db)
    target = rows[1]
    assert target.message_id and target.address
    # The DSN is about the address as the server spelled it (another case).
    raw = postfix_dsn(target.message_id, target.address.upper())
    summary, marked = read(db, raw)
    assert summary.line() == (
        "1 read: 1 bounce (1 hard, 0 soft), 0 complaints, 0 delays, "
        "0 auto-replies, 0 unmatched, 0 not reports, 0 already read"
    )
    [entry] = summary.reports
    with db.session() as session:
        report_id = session.scalar(select(BounceReport.id))
    assert entry == {
        "source": "m0",
        "report": report_id,
        "kind": "bounce",
        "class": "hard",
        "status": "5.1.1",
        "address": target.address.upper(),
        "run": run_id,
        "customer": target.customer_id,
        "matched_by": "message_id",
    }
    assert outcomes(db) == [(target.id, "bounce", "hard", "5.1.1", "message_id")]
    detail = f"5.1.1 550 5.1.1 <{target.address.upper()}>: Recipient address rejected: User unknown"
    assert suppressions(db) == {
        target.address: ("hard_bounce", date(2026, 11, 28), report_id, run_id, detail)
    }
    assert marked == ["m0"]

    again, marked_again = read(db, raw)
    assert (again.read, again.already_read, again.bounces, again.reports) == (1, 1, 0, [])
    assert marked_again == ["m0"]  # still marked read in its source
    assert len(outcomes(db)) == 1
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(BounceReport)) == 1


def test_matched_by_verp_then_by_address(db: Database) -> None:
    run_id, rows = sent_run(db)
    first, second = rows[0], rows[2]
    assert first.address and second.address
    verp = verp_address("bounces@mail.example.com", verp_token(run_id, first.position))
    summary, _ = read(db, postfix_dsn(None, first.address, delivered_to=verp))
    assert [r["matched_by"] for r in summary.reports] == ["verp"]
    # The same token given as the pipe's envelope recipient.
    summary, _ = read(db, postfix_dsn(None, first.address, own_id="<x1@mx>"), envelope_to=verp)
    assert [(r["matched_by"], r["run"]) for r in summary.reports] == [("verp", run_id)]
    # A report with neither: the address, most recently sent within 30 days.
    summary, _ = read(db, postfix_dsn(None, second.address, own_id="<x2@mx>"))
    assert [(r["matched_by"], r["customer"]) for r in summary.reports] == [
        ("address", second.customer_id)
    ]


def test_address_match_takes_the_most_recent_sent_or_unknown_within_30_days(db: Database) -> None:
    old_run, _ = sent_run(db, 1, sent_at=NOW - timedelta(days=31))
    summary, _ = read(db, postfix_dsn(None, "p0@example.org", own_id="<a@mx>"))
    assert (summary.unmatched, summary.bounces, summary.reports[0]["run"]) == (1, 0, None)
    assert suppressions(db) == {}  # no suppression for an address tied to nobody

    failed_run, _ = sent_run(db, 1, sent_at=NOW - timedelta(days=2), state="failed")
    recent, _ = sent_run(db, 1, sent_at=NOW - timedelta(days=3), state="unknown")
    newer, _ = sent_run(db, 1, sent_at=NOW - timedelta(days=4))
    summary, _ = read(db, postfix_dsn(None, "P0@example.org", own_id="<b@mx>"))
    assert [(r["run"], r["matched_by"]) for r in summary.reports] == [(recent, "address")]
    assert {old_run, failed_run, newer}.isdisjoint({recent})


def test_complaint_soft_bounce_delay_and_kept_suppressions(db: Database) -> None:
    run_id, rows = sent_run(db, 4)
    a, b, c, d = rows
    with db.session() as session:
        session.add(
            Suppression(
                address_lower=d.address.lower(),
                address=d.address,  # type: ignore[union-attr]
                reason="manual",
                since=date(2026, 1, 1),
            )
        )
    delayed = (
        (SAMPLES / "dsn_delayed.eml").read_bytes().replace(b"sara@slow.example", c.address.encode())
    )  # type: ignore[union-attr]
    summary, _ = read(
        db,
        arf_abuse(a.message_id, "redacted@isp.example"),
        postfix_dsn(b.message_id, b.address or "", status="4.2.2", own_id="<s@mx>"),
        delayed,
        postfix_dsn(d.message_id, d.address or "", own_id="<d@mx>"),
    )
    assert (
        summary.complaints,
        summary.bounces,
        summary.hard,
        summary.soft,
        summary.delays,
        summary.unmatched,
    ) == (1, 2, 1, 1, 1, 0)
    kept = suppressions(db)
    assert set(kept) == {a.address, d.address}
    assert kept[a.address][:2] == ("spam_complaint", date(2026, 11, 28))  # type: ignore[index]
    assert kept[a.address][3] == run_id  # type: ignore[index]
    assert kept[d.address] == ("manual", date(2026, 1, 1), None, None, None)  # type: ignore[index]


def test_auto_replies_ignored_reports_and_not_reports(db: Database, tmp_path: Path) -> None:
    sent_run(db)
    box = tmp_path / "box"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    files = {
        "1.a": "ooo_pt.eml",
        "2.b": "person_reply.eml",
        "3.c": "dsn_delivered.eml",
        "4.d": "arf_auth_failure.eml",
    }
    for name, sample in files.items():
        (box / "new" / name).write_bytes((SAMPLES / sample).read_bytes())
    summary = read_source(db, MaildirSource(box), NOW, ReadSummary())
    assert (summary.read, summary.auto_replies, summary.ignored, summary.not_reports) == (
        4,
        1,
        2,
        1,
    )
    assert [r["kind"] for r in summary.reports] == ["auto_reply"]
    assert sorted(p.name for p in (box / "new").iterdir()) == ["2.b"]
    assert sorted(p.name for p in (box / "cur").iterdir()) == ["1.a:2,S", "3.c:2,S", "4.d:2,S"]
    with db.session() as session:
        kinds = sorted(session.scalars(select(BounceReport.kind)))
    assert kinds == ["auto_reply", "ignored", "ignored"]  # the person's message not stored
    again = read_source(db, MaildirSource(box), NOW, ReadSummary())
    assert (again.read, again.already_read, again.not_reports) == (4, 3, 1)


def test_standard_input_keeps_even_a_non_report(db: Database) -> None:
    import io

    person = (SAMPLES / "person_reply.eml").read_bytes()
    summary = read_source(db, StdinSource(io.BytesIO(person)), NOW, ReadSummary())
    assert (summary.not_reports, summary.already_read) == (1, 0)
    with db.session() as session:
        assert list(session.scalars(select(BounceReport.kind))) == ["not_report"]
    again = read_source(db, StdinSource(io.BytesIO(person)), NOW, ReadSummary())
    assert again.already_read == 1
    # A file is read, never stored when it is no report.
    summary = read_source(db, FileSource(SAMPLES / "ooo_ja.eml"), NOW, ReadSummary())
    assert summary.auto_replies == 1


def test_configured_sources_read_by_one_process_at_a_time(db: Database, tmp_path: Path) -> None:
    import pytest

    from core.bounces.sources import SourceError
    from core.bounces.store import read_configured_sources, reading_turn
    from core.clock import FixedClock

    _, rows = sent_run(db, 1)
    box = tmp_path / "box"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.a").write_bytes(postfix_dsn(rows[0].message_id, rows[0].address or ""))
    clock = FixedClock(NOW)
    assert read_configured_sources(db, {}, clock) is None  # none configured
    env = {"MSGRUN_BOUNCE_SOURCES": f"{box}  {SAMPLES / 'qmail.eml'}"}
    with reading_turn(db) as mine:
        assert mine
        # Another worker's turn: this one reads nothing now.
        assert read_configured_sources(db, env, clock) is None
        assert [p.name for p in (box / "new").iterdir()] == ["1.a"]
    summary = read_configured_sources(db, env, clock)
    assert summary is not None
    assert (summary.read, summary.hard, summary.unmatched) == (2, 1, 1)
    with pytest.raises(SourceError, match=r"MSGRUN_BOUNCE_SOURCES: .*nope: no such file"):
        read_configured_sources(db, {"MSGRUN_BOUNCE_SOURCES": f"{tmp_path}/nope"}, clock)
