"""The report classifier (after-sending.md, "Each message is classified"), on
hand-written samples of every format in fixtures/bounces/."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bounces import Outcome, OutcomeType, ReportKind, classify
from core.bounces.nonstandard import detect_library_only

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"

BOUNCE, DELAY, COMPLAINT = OutcomeType.BOUNCE, OutcomeType.DELAY, OutcomeType.COMPLAINT


def read(name: str, envelope_to: str | None = None):  # type: ignore[no-untyped-def]
    return classify((SAMPLES / name).read_bytes(), envelope_to)


# name → (kind, original Message-ID, outcomes (type, class, status, address))
EXPECTED: dict[str, tuple[ReportKind, str | None, list[tuple[OutcomeType, str | None,
                                                             str | None, str | None]]]] = {
    "postfix_dsn.eml": (ReportKind.DSN, "<run7.r28.a1b2c3@msgrun.example.com>",
                        [(BOUNCE, "hard", "5.1.1", "ana@example.org")]),
    "gmail_dsn.eml": (ReportKind.DSN, "<run9.r10.aa11@msgrun.example.com>",
                      [(BOUNCE, "hard", "5.1.1", "dora.nobody@gmail.example")]),
    "exchange_ndr.eml": (ReportKind.DSN, "<run8.r3.778899@msgrun.example.com>",
                         [(BOUNCE, "hard", "5.1.10", "carla.old@corp.example.net")]),
    "dsn_two_recipients.eml": (ReportKind.DSN, "<run15.r1.abab@msgrun.example.com>",
                               [(BOUNCE, "hard", "5.1.1", "paulo@example.org"),
                                (BOUNCE, "soft", "4.2.2", "rita@example.org")]),
    "dsn_delayed.eml": (ReportKind.DSN, None, [(DELAY, None, "4.4.1", "sara@slow.example")]),
    "dsn_expired.eml": (ReportKind.DSN, None, [(BOUNCE, "soft", None, "uma@far.example")]),
    "dsn_delivered.eml": (ReportKind.IGNORED, "<run16.r1.cdcd@msgrun.example.com>", []),
    "exim_failed.eml": (ReportKind.NONSTANDARD, "<run7.r29.d4e5f6@msgrun.example.com>",
                        [(BOUNCE, "hard", "5.2.1", "bruno@example.net")]),
    "qmail.eml": (ReportKind.NONSTANDARD, "<run11.r4.bb22@msgrun.example.com>",
                  [(BOUNCE, "hard", "5.1.1", "eva@isp.example")]),
    "qmail_mailbox_full.eml": (ReportKind.NONSTANDARD, "<run11.r5.cc33@msgrun.example.com>",
                               [(BOUNCE, "soft", "4.2.2", "filipa@isp.example")]),
    "domino.eml": (ReportKind.NONSTANDARD, "<run12.r1.dd44@msgrun.example.com>",
                   [(BOUNCE, "hard", None, "gil@legacy.example")]),
    "mail2000.eml": (ReportKind.NONSTANDARD, None,
                     [(BOUNCE, "hard", None, "hana@carrier.example")]),
    "workmail_text_dsn.eml": (ReportKind.NONSTANDARD, "<run13.r2.ee55@msgrun.example.com>",
                              [(BOUNCE, "hard", "5.2.2", "ines@hosted.example")]),
    "ses_bounce.eml": (ReportKind.NONSTANDARD, None,
                       [(BOUNCE, "hard", "5.1.1", "vera@ses-target.example")]),
    "arf_abuse.eml": (ReportKind.COMPLAINT, "<run7.r30.ff66@msgrun.example.com>",
                      [(COMPLAINT, None, None, "joao@isp.example")]),
    "jmrp_complaint.eml": (ReportKind.COMPLAINT, "<run14.r9.1234@msgrun.example.com>",
                           [(COMPLAINT, None, None, "kai@hotmail.example")]),
    "ses_complaint.eml": (ReportKind.COMPLAINT, None,
                          [(COMPLAINT, None, None, "wes@ses-target.example")]),
    "arf_auth_failure.eml": (ReportKind.IGNORED, "<run7.r30.ff66@msgrun.example.com>", []),
    "ses_delivery.eml": (ReportKind.IGNORED, None, []),
    "ooo_en.eml": (ReportKind.AUTO_REPLY, None, []),
    "ooo_pt.eml": (ReportKind.AUTO_REPLY, None, []),
    "ooo_de.eml": (ReportKind.AUTO_REPLY, None, []),
    "ooo_ja.eml": (ReportKind.AUTO_REPLY, None, []),
    "person_reply.eml": (ReportKind.NOT_REPORT, None, []),
    # A person answering a bounce's subject, naming a failed address: still a person.
    "person_reply_failure.eml": (ReportKind.NOT_REPORT, None, []),
}


def test_every_sample_is_classified_here() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_is_classified_exactly(name: str) -> None:
    kind, original, outcomes = EXPECTED[name]
    report = read(name)
    assert report.kind is kind, report.why
    assert report.original_message_id == original
    assert [(o.type, o.bounce_class, o.status, o.address) for o in report.outcomes] == outcomes


def test_the_servers_words_are_kept() -> None:
    [postfix] = read("postfix_dsn.eml").outcomes
    assert postfix.diagnostic == (
        "550 5.1.1 <ana@example.org>: Recipient address rejected: User unknown")
    [exim] = read("exim_failed.eml").outcomes
    assert exim.diagnostic == "550 5.2.1 The email account that you tried to reach is disabled"
    [domino] = read("domino.eml").outcomes
    assert domino.diagnostic == "User gil (gil@legacy.example) not listed in Domino Directory"
    [delay] = read("dsn_delayed.eml").outcomes
    assert delay.diagnostic == (
        "connect to mx.slow.example[203.0.113.9]:25: Connection timed out")
    [complaint] = read("arf_abuse.eml").outcomes
    assert complaint == Outcome(COMPLAINT, None, None, "joao@isp.example",
                                "feedback report: abuse (ExampleFBL/1.0)")


def test_original_message_id_never_the_reports_own_or_in_reply_to() -> None:
    # The delayed DSN returns no original: its In-Reply-To is not taken for one.
    delayed = read("dsn_delayed.eml")
    assert delayed.message_id == "<20261128133000.BB02@relay.example.org>"
    assert delayed.original_message_id is None
    postfix = read("postfix_dsn.eml")
    assert postfix.message_id == "<20261128091240.4F1A2C0021@mx.example.com>"
    assert postfix.original_message_id == "<run7.r28.a1b2c3@msgrun.example.com>"
    # An auto-reply quoting the original in In-Reply-To has no original either.
    assert read("ooo_en.eml").original_message_id is None


def test_delivered_to_candidates_and_envelope_to() -> None:
    report = read("arf_abuse.eml", envelope_to="bounces+zz@mail.example.com")
    assert report.delivered_to == ("bounces+r7-2t-0000@mail.example.com",
                                   "fbl-reports@mail.example.com",
                                   "bounces+zz@mail.example.com")
    assert read("exim_failed.eml").delivered_to == ("bounces@mail.example.com",)


def test_report_date_in_utc() -> None:
    assert read("domino.eml").date == datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    assert read("gmail_dsn.eml").date == datetime(2026, 11, 28, 9, 15, tzinfo=UTC)
    undated = classify(b"From: a@b.example\nSubject: hi\n\nhello\n")
    assert undated.date is None and undated.kind is ReportKind.NOT_REPORT


def test_feedback_type_is_reported() -> None:
    assert read("arf_abuse.eml").feedback_type == "abuse"
    assert read("arf_auth_failure.eml").feedback_type == "auth-failure"


def test_fraud_is_a_complaint_and_opt_out_an_unsubscribe() -> None:
    raw = (SAMPLES / "arf_abuse.eml").read_bytes()
    fraud = classify(raw.replace(b"Feedback-Type: abuse", b"Feedback-Type: fraud"))
    assert fraud.kind is ReportKind.COMPLAINT
    assert [o.type for o in fraud.outcomes] == [COMPLAINT]
    opt_out = classify(raw.replace(b"Feedback-Type: abuse", b"Feedback-Type: opt-out"))
    assert opt_out.kind is ReportKind.UNSUBSCRIBE  # inbox.md: recorded like a one-click
    assert [o.type.value for o in opt_out.outcomes] == ["unsubscribe"]
    for other in (b"virus", b"not-spam", b"other"):
        report = classify(raw.replace(b"Feedback-Type: abuse", b"Feedback-Type: " + other))
        assert report.kind is ReportKind.IGNORED and report.outcomes == ()


def test_auto_reply_is_read_before_any_bounce_detector() -> None:
    # The English out-of-office says "was not delivered" and names an address, and
    # the library alone (which knows nothing of auto-replies) is not even asked.
    raw = (SAMPLES / "ooo_en.eml").read_bytes()
    assert classify(raw, detector=lambda _m, _b: [_fail()]).kind is ReportKind.AUTO_REPLY


def _fail():  # type: ignore[no-untyped-def]
    from core.bounces.nonstandard import Failure

    return Failure("luis@customer.example", True, None, None)


def test_auto_submitted_bounce_from_mailer_daemon_is_a_bounce() -> None:
    # Exim marks its bounces Auto-Submitted: they come from a delivery system.
    report = read("exim_failed.eml")
    assert b"Auto-Submitted: auto-replied" in (SAMPLES / "exim_failed.eml").read_bytes()
    assert report.kind is ReportKind.NONSTANDARD


def test_auto_reply_markers() -> None:
    base = (b"Return-Path: <pat@customer.example>\nFrom: Pat <pat@customer.example>\n"
            b"To: bounces@mail.example.com\nSubject: Re: Invoice\n")
    body = b"\nThanks, I will be back on Monday.\n"
    for marker in (b"Auto-Submitted: auto-generated\n", b"X-Autorespond: yes\n",
                   b"X-Autoreply: yes\n", b"Precedence: auto_reply\n"):
        assert classify(base + marker + body).kind is ReportKind.AUTO_REPLY, marker
    assert classify(base + b"Auto-Submitted: no\n" + body).kind is ReportKind.NOT_REPORT
    assert classify(base + body).kind is ReportKind.NOT_REPORT


def test_library_alone_misses_what_msgrun_adds() -> None:
    """Each addition is needed: flufl.bounce alone gets these wrong."""
    def alone(name: str):  # type: ignore[no-untyped-def]
        return classify((SAMPLES / name).read_bytes(), detector=detect_library_only)

    # An unknown format (Mail2000), delivery-status fields in the text.
    for name in ("mail2000.eml", "workmail_text_dsn.eml"):
        assert alone(name).kind is ReportKind.NOT_REPORT, name
    # An Amazon SES notification: the library takes a piece of JSON for an address.
    assert [o.address for o in alone("ses_bounce.eml").outcomes] != ["vera@ses-target.example"]
    # The status from the human-readable text, and hard/soft from it.
    [full] = alone("qmail_mailbox_full.eml").outcomes
    assert (full.bounce_class, full.status) == ("hard", None)
    [qmail] = alone("qmail.eml").outcomes
    assert qmail.status is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_classified_without_error(raw: bytes) -> None:
    assert isinstance(classify(raw).kind, ReportKind)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(EXPECTED)), st.integers(0, 10_000), st.binary(max_size=40))
def test_damaged_samples_are_classified_without_error(name: str, cut: int, junk: bytes) -> None:
    raw = (SAMPLES / name).read_bytes()
    position = cut % (len(raw) + 1)
    assert isinstance(classify(raw[:position] + junk + raw[position:]).kind, ReportKind)


def _postfix(**replaced: str) -> bytes:
    """The Postfix DSN sample with some of its fields' lines replaced."""
    raw = (SAMPLES / "postfix_dsn.eml").read_text()
    for old, new in replaced.items():
        assert old in raw
        raw = raw.replace(old, new)
    return raw.encode()


@pytest.mark.parametrize("status", ["9.9.9", "failed", "6.1.1"])
def test_a_status_that_is_no_rfc_3463_code_is_not_a_hard_bounce(status: str) -> None:
    raw = _postfix(**{
        "Status: 5.1.1": f"Status: {status}",
        "Diagnostic-Code: smtp; 550 5.1.1": "Diagnostic-Code: smtp; 550",
    })
    (outcome,) = classify(raw).outcomes
    assert (outcome.type, outcome.bounce_class, outcome.status) == (BOUNCE, "soft", None)


def test_an_unreadable_status_yields_to_a_code_in_the_diagnostic() -> None:
    (outcome,) = classify(_postfix(**{"Status: 5.1.1": "Status: 9.9.9"})).outcomes
    assert (outcome.bounce_class, outcome.status) == ("hard", "5.1.1")


def test_a_dsn_without_a_status_still_fails_for_good() -> None:
    raw = _postfix(**{
        "Status: 5.1.1\n": "",
        "Diagnostic-Code: smtp; 550 5.1.1": "Diagnostic-Code: smtp; gone",
    })
    (outcome,) = classify(raw).outcomes
    assert outcome.bounce_class == "hard"


def test_huge_fields_of_a_report_are_bounded() -> None:
    huge = "x" * 200_000
    raw = _postfix(**{
        "Final-Recipient: rfc822; ana@example.org": f"Final-Recipient: rfc822; {huge}@example.org",
        "Original-Recipient: rfc822;ana@example.org": f"Original-Recipient: rfc822;{huge}@a.org",
        "Diagnostic-Code: smtp; 550 5.1.1": f"Diagnostic-Code: smtp; 550 5.1.1 {huge}",
        "Message-ID: <run7.r28.a1b2c3@msgrun.example.com>": f"Message-ID: <{huge}@x>",
        "Message-Id: <20261128091240.4F1A2C0021@mx.example.com>": f"Message-Id: <{huge}@y>",
    })
    report = classify(raw)
    (outcome,) = report.outcomes
    assert outcome.address is None  # no address is 200 KB long
    assert outcome.diagnostic is not None and len(outcome.diagnostic) == 1000
    assert outcome.diagnostic.startswith("550 5.1.1 xxx") and outcome.diagnostic.endswith("…")
    assert report.original_message_id is None and report.message_id is None
    junk = classify(_postfix(**{"Action: failed": f"Action: {huge}"}))
    assert len(junk.why) <= 300
