"""Report sources: Maildir, a file, standard input; checking SOURCE arguments."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from core.bounces.sources import (
    FileSource,
    ImapSource,
    MaildirSource,
    SourceError,
    StdinSource,
    check_source,
)

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"


def make_maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    return root


def test_maildir_reads_new_and_cur_and_marks_only_what_it_is_told(tmp_path: Path) -> None:
    box = make_maildir(tmp_path / "Maildir")
    report = (SAMPLES / "postfix_dsn.eml").read_bytes()
    person = (SAMPLES / "person_reply.eml").read_bytes()
    (box / "new" / "1700000000.1.host").write_bytes(report)
    (box / "new" / "1700000000.2.host").write_bytes(person)
    (box / "cur" / "1700000000.3.host:2,F").write_bytes(report)
    (box / "cur" / "1700000000.4.host:2,S").write_bytes(report)
    (box / "new" / ".hidden").write_bytes(b"junk")
    (box / "tmp" / "1700000000.5.host").write_bytes(report)

    source = check_source(str(box))
    assert isinstance(source, MaildirSource)
    messages = list(source.read())
    assert [m.source for m in messages] == [
        str(box / "new" / "1700000000.1.host"),
        str(box / "new" / "1700000000.2.host"),
        str(box / "cur" / "1700000000.3.host:2,F"),
        str(box / "cur" / "1700000000.4.host:2,S"),
    ]
    assert messages[0].raw == report and messages[1].raw == person
    # Mark the reports (not the person's message) as read.
    for m in (messages[0], messages[2], messages[3]):
        m.mark_read()
    assert sorted(p.name for p in (box / "new").iterdir()) == [".hidden", "1700000000.2.host"]
    assert sorted(p.name for p in (box / "cur").iterdir()) == [
        "1700000000.1.host:2,S",
        "1700000000.3.host:2,FS",
        "1700000000.4.host:2,S",
    ]
    assert (box / "new" / "1700000000.2.host").read_bytes() == person
    assert (box / "cur" / "1700000000.1.host:2,S").read_bytes() == report
    # Marking twice (another reader got there first) is harmless.
    messages[0].mark_read()


def test_file_and_stdin(tmp_path: Path) -> None:
    path = SAMPLES / "qmail.eml"
    source = check_source(str(path))
    assert isinstance(source, FileSource)
    [message] = list(source.read())
    assert (message.source, message.raw) == (str(path), path.read_bytes())
    message.mark_read()
    assert path.exists()

    stdin = check_source("-", stdin=io.BytesIO(b"Subject: x\n\nbody\n"))
    assert isinstance(stdin, StdinSource)
    [piped] = list(stdin.read())
    assert (piped.source, piped.raw) == ("-", b"Subject: x\n\nbody\n")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "absent", "no such file or folder"),
        (lambda p: (p / "plain").mkdir() or p / "plain", "not a Maildir (no cur, new, tmp/"),
        (
            lambda p: (p / "x.pdf").write_bytes(b"%PDF-1.7\n") and p / "x.pdf",
            "not an email message",
        ),
    ],
)
def test_bad_sources_are_named(tmp_path: Path, make, words: str) -> None:  # type: ignore[no-untyped-def]
    spec = str(make(tmp_path))
    with pytest.raises(SourceError) as caught:
        check_source(spec)
    assert str(caught.value).startswith(spec) and words in str(caught.value)


def test_imap_urls() -> None:
    env = {"MSGRUN_IMAP_PASSWORD": "secret"}
    plain = check_source("imap://bounces%40mail.example.com@127.0.0.1:1143/Reports", env)
    assert isinstance(plain, ImapSource)
    assert (plain.user, plain.host, plain.port, plain.folder, plain.secure, plain.password) == (
        "bounces@mail.example.com",
        "127.0.0.1",
        1143,
        "Reports",
        False,
        "secret",
    )
    secure = check_source("imaps://ops@imap.example.com/INBOX", env)
    assert isinstance(secure, ImapSource)
    assert (secure.port, secure.secure) == (993, True)
    with pytest.raises(SourceError, match="MSGRUN_IMAP_PASSWORD is not set"):
        check_source("imap://ops@imap.example.com/INBOX", {})
    with pytest.raises(SourceError, match=r"imap://USER@HOST\[:PORT\]/FOLDER"):
        check_source("imap://imap.example.com/INBOX", env)
    with pytest.raises(SourceError, match="not a Maildir, a message file or an imap"):
        check_source("pop3://ops@mail.example.com", env)


def test_a_message_moved_to_cur_while_reading_is_not_read_again(tmp_path: Path) -> None:
    box = make_maildir(tmp_path / "Maildir")
    (box / "new" / "1.a").write_bytes(b"Subject: one\n\n1\n")
    (box / "new" / "2.b").write_bytes(b"Subject: two\n\n2\n")
    seen = []
    for message in MaildirSource(box).read():
        seen.append(message.source)
        message.mark_read()
    assert seen == [str(box / "new" / "1.a"), str(box / "new" / "2.b")]
    assert sorted(p.name for p in (box / "cur").iterdir()) == ["1.a:2,S", "2.b:2,S"]
