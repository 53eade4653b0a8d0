"""A built message given its attachments (``core.attachments.mime``), with the evidence."""

from __future__ import annotations

from dataclasses import replace

from core.attachments.mime import Attacher, with_attachments
from core.attachments.specs import FileSpec
from core.messages.message import Envelope


def attach(
    envelope: Envelope, attacher: Attacher | None, document_files: tuple[FileSpec, ...]
) -> Envelope:
    """``envelope`` with what its message attaches (FileProblem or FolderMissing when a
    file cannot be attached: then no message is built)."""
    if attacher is None:
        return envelope
    parts = attacher.parts(document_files)
    if not parts:
        return envelope
    return replace(
        envelope,
        data=with_attachments(envelope.data, parts),
        attachments=tuple(part.evidence() for part in parts),
    )
