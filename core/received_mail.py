"""A folder of received messages, one file per Message-ID: what a local SMTP server
(the demo's) keeps, and what the console's message view shows "as received"."""

from __future__ import annotations

from pathlib import Path


def mail_file_name(message_id: str) -> str:
    """The file a received message is kept in, named by its Message-ID."""
    return "".join(c if c.isalnum() or c in "._-@" else "_" for c in message_id) + ".eml"


def received_message(folder: Path, message_id: str) -> bytes | None:
    """The message as the server received it, or None when it kept none."""
    received = folder / mail_file_name(message_id)
    return received.read_bytes() if received.exists() else None
