"""What a message must attach, as stored: a document's files and a definition's own.

A document's ``files`` are stored as ``[{"path", "name", "content_type"}]``
with the defaults filled in at import (the name the path's last part, the
type the name's extension gives). A definition stores whether it attaches
its document's files (``attach_document_files``) and the paths it attaches
to every message (``attachment_files``).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

# Definitions of these kinds attach their document's files unless told not to.
DOCUMENT_FILES_BY_DEFAULT = frozenset(
    {"invoice", "invoice_reminder", "job_sheet", "payment_receipt", "confirmation"}
)
# Python's own table only (not the machine's /etc/mime.types), so that the same
# file gives the same type everywhere.
_TYPES = mimetypes.MimeTypes()
OCTET_STREAM = "application/octet-stream"


def default_name(path: str) -> str:
    return PurePosixPath(path).name


def default_type(name: str) -> str:
    found, _ = _TYPES.guess_type(name, strict=True)
    return found or OCTET_STREAM


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One file a message attaches: its path in the documents folder, the name the
    customer sees, and its content type."""

    path: str
    name: str
    content_type: str

    @classmethod
    def of_path(cls, path: str) -> FileSpec:
        name = default_name(path)
        return cls(path, name, default_type(name))

    def as_json(self) -> dict[str, str]:
        return {"path": self.path, "name": self.name, "content_type": self.content_type}


def file_specs(stored: Any) -> tuple[FileSpec, ...]:
    """A document's stored ``files`` column (None or a list of dicts) as specs."""
    if not stored:
        return ()
    return tuple(
        FileSpec(
            item["path"],
            item.get("name") or default_name(item["path"]),
            item.get("content_type") or default_type(item.get("name") or item["path"]),
        )
        for item in stored
    )


def definition_specs(paths: Iterable[str] | None) -> tuple[FileSpec, ...]:
    return tuple(FileSpec.of_path(path) for path in paths or ())


def message_specs(
    document_files: Sequence[FileSpec], attach_document_files: bool, own: Sequence[FileSpec]
) -> tuple[FileSpec, ...]:
    """What one message attaches: its document's files (when the definition attaches
    them), then the definition's own files."""
    return (*(document_files if attach_document_files else ()), *own)
