"""Run by tests/test_headers.py under every Python at hand (``python header_decoders.py``
with the worktree on PYTHONPATH): builds a message for each case read from stdin (JSON)
with msgrun's builder, and prints, as JSON, the bytes (hex) and what this Python's two
decoders give back: ``email.header.decode_header`` (the legacy decoder) and the parser of
``email.policy.default``. Only the standard library and ``core.messages.message``."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.policy import default

from core.messages.message import build_message

FOLD = re.compile(r"\r\n(?=[ \t])")


def legacy(value: str) -> str:
    """decode_header on an unfolded value."""
    return str(make_header(decode_header(FOLD.sub("", value))))


def raw_header(data: bytes, name: str) -> str:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    match = re.search(rf"^{name}: (.*?)\r\n(?![ \t])", head + "\r\n", re.M | re.S)
    assert match is not None
    return match.group(1)


def phrase(value: str) -> str:
    """The display-name part of ``Name <address>`` (raw, still encoded)."""
    return value.rsplit("<", 1)[0].rstrip(" \r\n")


def main() -> None:
    results = []
    for case in json.load(sys.stdin):
        envelope = build_message(
            from_address="billing@pools.example.com",
            from_name=case["name"],
            to_address=case.get("to", "ana@example.org"),
            to_name=case["name"],
            subject=case["subject"],
            text="t",
            html=None,
            message_id="<m@pools.example.com>",
            date=datetime(2026, 12, 4, 9, 0, tzinfo=UTC),
        )
        parsed = message_from_bytes(envelope.data, policy=default)
        subject_raw = raw_header(envelope.data, "Subject")
        to_raw = raw_header(envelope.data, "To")
        results.append(
            {
                "data": envelope.data.hex(),
                "subject_legacy": legacy(subject_raw),
                "subject_policy": str(parsed["Subject"]),
                "name_legacy": legacy(phrase(to_raw)) if "=?" in to_raw else None,
                "name_policy": parsed["To"].addresses[0].display_name,
            }
        )
    json.dump({"version": sys.version.split()[0], "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
