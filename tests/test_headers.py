"""Header text decodes to exactly what was rendered (inbox.md), held to decoders msgrun
did not write: Perl's Encode (MIME-Header), and the email package's two decoders on every
Python at hand (3.11, 3.12, 3.13 where installed), on adversarial subjects and names."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.messages.message import header_text
from tests.delivery_support import profile_settings

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "header_decoders.py"
ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")

ADVERSARIAL = [
    "Blue Lagoon Pools – Zürich: Rechnung INV-2026-0042 für Jürgen Müller, fällig am 15. Dezember",
    "Pools – Zürich",
    "Élodie Dupré  —  votre facture   du 4 décembre\t2026\r\n(rappel)  ",
    "🏊‍♀️ Pool party 🎉🎉  this weekend — bring 👨‍👩‍👧‍👦 and 🐶!",
    "Rechnung\u00a0Nr.\u00a05\u3000山田 太郎 様　ご請求書",
    "\u00a0leading and trailing non-breaking spaces\u00a0",
    "=?utf-8?q?not_an_encoded_word?= but looks like one",
    'under_scores _ and = equals ? questions ?= =? and "quotes" (parens) <angle> @ ; :',
    "x" * 1200,
    "ü" * 700,
    "e\u0301te\u0301 – café vs cafe\u0301",
    "line\x0bfeed\x0cform\x85next\u2028separator\u2029paragraph",
    "مرحبا بكم في حمام السباحة – فاتورة رقم ٤٢",
    "A" + " ü" * 60,
    "ü" + " " * 5 + "ü" + "\t\t" + "ü",
    " ",
    "",
    "plain ASCII subject that is long enough to need folding at spaces, more than 78 chars",
]
NAMES = [
    "Jürgen Müller",
    "Élodie Dupré",
    "山田 太郎",
    "Müller, Jürgen (Accounts)",
    'O\'Brien "the pool guy" – Zürich',
    "🏊 Blue Lagoon Pools  Pty Ltd",
    "Smith, Ana",
    "=?utf-8?q?x?=",
    "Name\u00a0with\u3000spaces",
]


def pythons() -> list[str]:
    """Every Python 3.11 or newer on this machine (PATH, and pyenv's versions)."""
    found: dict[str, str] = {}
    candidates = [sys.executable]
    for name in ("python3.11", "python3.12", "python3.13", "python3.14"):
        if path := shutil.which(name):
            candidates.append(path)
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{root}/versions/3.1[1-9]*/bin/python3.1[1-9]"))
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        version = probe.stdout.strip()
        if probe.returncode == 0 and tuple(int(p) for p in version.split(".")[:2]) >= (3, 11):
            found.setdefault(".".join(version.split(".")[:2]), candidate)
    return sorted(found.values())


def run_decoders(python: str, cases: list[dict[str, str]]) -> dict[str, object]:
    done = subprocess.run(
        [python, str(SCRIPT)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def perl_decode(values: list[str]) -> list[str]:
    """Perl's Encode::MIME::Header on each (folded) header value."""
    if shutil.which("perl") is None:
        pytest.skip("perl is not installed")
    script = (
        'use Encode; local $/ = "\\0"; binmode STDOUT;'
        " while (my $v = <STDIN>) { chomp $v;"
        ' print encode("UTF-8", decode("MIME-Header", $v)), "\\0" }'
    )
    done = subprocess.run(
        ["perl", "-e", script],
        input="".join(v + "\0" for v in values).encode("utf-8"),
        capture_output=True,
        timeout=60,
        check=True,
    )
    return done.stdout.decode("utf-8").split("\0")[:-1]


def raw_header(data: bytes, name: str) -> str:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    match = re.search(rf"^{name}: (.*?)\r\n(?![ \t])", head + "\r\n", re.M | re.S)
    assert match is not None
    return match.group(1)


def check_shape(data: bytes) -> None:
    """No line over 998 octets; no encoded word over 75 characters; no two encoded words
    without whitespace between them (RFC 2047 5: ``?==?`` is refused by some receivers)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    assert all(len(line.encode()) <= 998 for line in head.split("\r\n"))
    assert "?==?" not in head
    for word in ENCODED_WORD.findall(head):
        assert len(word) <= 75, word
    for line in head.split("\r\n"):
        if len(line) > 78:
            assert " " not in line.strip() or not ENCODED_WORD.search(line), line


def cases() -> list[dict[str, str]]:
    names = NAMES + ["Ana"] * (len(ADVERSARIAL) - len(NAMES))
    return [{"subject": s, "name": n} for s, n in zip(ADVERSARIAL, names, strict=True)]


def test_header_text_collapses_only_spaces_tabs_and_line_breaks() -> None:
    assert header_text("  a \t\r\n b\u00a0 c\u3000\r\n") == "a b\u00a0 c\u3000"


@pytest.mark.parametrize("python", pythons())
def test_every_python_at_hand_builds_the_same_headers_and_decodes_them_to_the_rendered_text(
    python: str,
) -> None:
    given_cases = cases()
    here = run_decoders(sys.executable, given_cases)
    there = run_decoders(python, given_cases)
    assert isinstance(here["results"], list) and isinstance(there["results"], list)
    for case, mine, theirs in zip(given_cases, here["results"], there["results"], strict=True):
        assert theirs["data"] == mine["data"], f"{there['version']} built other bytes"
        expected = header_text(case["subject"])
        assert theirs["subject_legacy"] == expected, (there["version"], "decode_header")
        assert theirs["subject_policy"] == expected, (there["version"], "policy parser")
        assert theirs["name_policy"] == header_text(case["name"]), there["version"]
        if theirs["name_legacy"] is not None:
            assert theirs["name_legacy"] == header_text(case["name"])
        check_shape(bytes.fromhex(theirs["data"]))


def test_perl_decodes_every_adversarial_subject_and_name_to_the_rendered_text() -> None:
    given_cases = cases()
    results = run_decoders(sys.executable, given_cases)["results"]
    assert isinstance(results, list)
    datas = [bytes.fromhex(r["data"]) for r in results]
    subjects = perl_decode([raw_header(d, "Subject") for d in datas])
    assert subjects == [header_text(c["subject"]) for c in given_cases]
    encoded_names = [
        (case, raw_header(d, "To").rsplit("<", 1)[0].rstrip(" \r\n"))
        for case, d in zip(given_cases, datas, strict=True)
        if "=?" in raw_header(d, "To")
    ]
    assert len(encoded_names) >= 6
    decoded = perl_decode([raw for _, raw in encoded_names])
    assert decoded == [header_text(case["name"]) for case, _ in encoded_names]


text_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(text_chars, max_size=300), min_size=1, max_size=20))
def test_any_subject_decodes_to_the_rendered_text_by_perl_and_python(subjects: list[str]) -> None:
    given_cases = [{"subject": s, "name": s[:60]} for s in subjects]
    results = run_decoders(sys.executable, given_cases)["results"]
    assert isinstance(results, list)
    datas = [bytes.fromhex(r["data"]) for r in results]
    for case, result, data in zip(given_cases, results, datas, strict=True):
        assert result["subject_legacy"] == header_text(case["subject"])
        assert result["subject_policy"] == header_text(case["subject"])
        check_shape(data)
    assert perl_decode([raw_header(d, "Subject") for d in datas]) == [
        header_text(c["subject"]) for c in given_cases
    ]


def kind_message(kind: str, definition_reply_to: str | None) -> bytes:
    from datetime import UTC, datetime

    from core.messages.compose import Composer, Draft, Templates

    profile = profile_settings(reply_to="office@pools.example.com")
    templates = Templates(
        definition_id="d",
        subject="s",
        text="t",
        html=None,
        organisation={"name": "Pools", "timezone": "UTC"},
        kind=kind,
        reply_to=definition_reply_to,
    )
    draft = Draft(1, "<m@pools.example.com>", "ana@example.org", "Ana", {})
    data = Composer(1, profile, templates).build(draft, datetime(2026, 12, 4, tzinfo=UTC)).data
    return data.split(b"\r\n\r\n", 1)[0] + b"\r\n"


@pytest.mark.parametrize(
    "kind",
    ["invoice", "payment_receipt", "job_sheet", "invoice_reminder", "broadcast", "confirmation"],
)
def test_headers_by_kind_of_message(kind: str) -> None:
    head = kind_message(kind, None)
    assert b"\r\nAuto-Submitted: auto-generated\r\n" in head
    assert b"\r\nReply-To: office@pools.example.com\r\n" in head
    assert (b"\r\nPrecedence: bulk\r\n" in head) == (kind == "broadcast")
    if kind in ("invoice", "payment_receipt", "job_sheet"):
        assert b"List-Unsubscribe" not in head and b"Precedence" not in head


def test_the_definitions_reply_to_wins_over_the_profiles() -> None:
    head = kind_message("invoice", "accounts@pools.example.com")
    assert head.count(b"Reply-To:") == 1
    assert b"\r\nReply-To: accounts@pools.example.com\r\n" in head
