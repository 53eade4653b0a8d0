"""A server that refuses everyone, a template that fails for everyone (domain.md), files
missing for everyone (attachments.md): the count of the same failure in a row
(``core.delivery.streaks``, pure)."""

from __future__ import annotations

from core.delivery.streaks import (
    IN_A_ROW,
    NONE,
    Streak,
    after_missing_file,
    after_render_failure,
    after_reply,
    folder_fault,
    missing_files_fault,
    refusals_fault,
    render_fault,
    reply_key,
)

DENIED = (550, "5.7.1 Relaying denied")


def replies(*seen: tuple[int, str], streak: Streak = NONE) -> Streak:
    for code, text in seen:
        streak = after_reply(streak, code, text)
    return streak


def test_twenty_alike_in_a_row_are_a_fault_naming_the_reply() -> None:
    assert refusals_fault(replies(*[DENIED] * (IN_A_ROW - 1))) is None
    streak = replies(*[DENIED] * IN_A_ROW)
    fault = refusals_fault(streak)
    assert IN_A_ROW == 20 and streak.count == 20
    assert fault is not None and "550 5.7.1 Relaying denied" in fault
    assert "20 recipients in a row" in fault


def test_addresses_angle_brackets_and_spaces_do_not_make_replies_differ() -> None:
    said = [
        (550, f"5.7.1 <p{i}@example.org>: Relay   access denied for p{i}@example.org")
        for i in range(IN_A_ROW)
    ]
    streak = replies(*said)
    assert streak.count == IN_A_ROW
    assert reply_key(*said[0]) == (550, "5.7.1", ": Relay access denied for")


def test_a_2xx_a_4xx_or_another_5xx_starts_the_count_again() -> None:
    for other in ((250, "2.0.0 Ok"), (451, "4.3.0 try later"), (554, "5.7.1 Relaying denied")):
        streak = replies(*[DENIED] * (IN_A_ROW - 1), other, *[DENIED] * (IN_A_ROW - 1))
        assert streak.count == IN_A_ROW - 1, other
        assert refusals_fault(replies(DENIED, streak=streak)) is not None
    # Another enhanced status, or another text, is another reply.
    assert replies(DENIED, (550, "5.7.26 Relaying denied")).count == 1
    assert replies(DENIED, (550, "5.7.1 Relaying refused")).count == 1


def test_mailbox_statuses_neither_count_nor_start_again() -> None:
    mailbox = [(550, "5.1.1 no such user"), (552, "5.2.2 mailbox full"), (550, "5.1.10 null mx")]
    streak = replies(*[DENIED] * 10, *mailbox, *[DENIED] * 10)
    assert streak.count == 20 and refusals_fault(streak) is not None
    assert replies(*mailbox * 10).count == 0
    # Nor does msgrun's own verdict, which the server never said.
    own = (553, "msgrun: the address needs SMTPUTF8, which the server does not offer")
    assert replies(*[DENIED] * 5, own, *[DENIED] * 5).count == 10


def test_a_5xx_without_an_enhanced_status_counts_by_its_words() -> None:
    streak = replies(*[(554, "Transaction failed")] * IN_A_ROW)
    assert refusals_fault(streak) is not None
    assert replies((554, "Transaction failed"), (554, "Service unavailable")).count == 1


def test_twenty_alike_template_failures_are_a_fault_of_the_definition() -> None:
    error = "template error: 'None' has no attribute 'amount'"
    streak = NONE
    for _ in range(IN_A_ROW - 1):
        streak = after_render_failure(streak, error)
    assert render_fault(streak) is None
    assert after_render_failure(streak, "template error: another").count == 1
    streak = after_render_failure(streak, error)
    fault = render_fault(streak)
    assert fault is not None and error in fault and "fault of the definition" in fault


def test_twenty_files_missing_in_a_row_are_a_fault_naming_the_files_and_the_folder() -> None:
    streak = NONE
    for _ in range(IN_A_ROW - 1):
        streak = after_missing_file(streak, "terms.pdf: no such file")
    assert missing_files_fault(streak, "/srv/billing/out") is None
    streak = after_missing_file(streak, "terms.pdf:   no such file")
    assert streak.count == IN_A_ROW
    assert missing_files_fault(streak, "/srv/billing/out") == (
        "files to attach were missing or unreadable for 20 recipients in a row: "
        "terms.pdf: no such file (in the documents folder /srv/billing/out; a fault of the "
        "definition, not of the recipients: once the files are back, run restart sends "
        "those not tried and run follow-up the failed)"
    )
    fault = missing_files_fault(streak, None) or ""  # no documents_folder at all
    assert "no such file (a fault of the definition" in fault and "template" not in fault


def test_files_missing_count_whichever_file_and_the_first_three_are_named() -> None:
    streak = NONE
    for i in range(IN_A_ROW):
        streak = after_missing_file(streak, f"2026/2026-{i:05d}.pdf: no such file")
    fault = missing_files_fault(streak, "/srv/out") or ""
    assert (
        "in a row: 2026/2026-00000.pdf: no such file; 2026/2026-00001.pdf: no such file; "
        "2026/2026-00002.pdf: no such file; and others (in the documents folder /srv/out;"
    ) in fault
    streak = NONE
    for i in range(IN_A_ROW):
        streak = after_missing_file(streak, f"{'ab'[i % 2]}.pdf: no such file")
    assert "in a row: a.pdf: no such file; b.pdf: no such file (in" in (
        missing_files_fault(streak, "/srv/out") or ""
    )


def test_a_documents_folder_gone_says_what_to_do() -> None:
    fault = folder_fault("the documents folder /srv/out does not exist or is not a folder")
    assert fault.startswith("the documents folder /srv/out does not exist or is not a folder (")
    assert "fault of the definition" in fault and "run restart" in fault
