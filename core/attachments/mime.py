"""Attachments read, encoded and put into a message (``attachments.md``).

``Attacher`` reads what one recipient's message attaches: its document's
files each time (they are the customer's own), the definition's files once
per delivery (again only when a file's size, modification time or inode
changes). Every file is opened through ``folder.open_inside``, so a file that
is gone, or a link that now points out of the folder, is a ``FileProblem``:
the message is never built without it. ``with_attachments`` turns a built
message into ``multipart/mixed``: the body as it was, then each attachment,
base64 in lines of 76, its file name as an RFC 2231 parameter
(``filename*=utf-8''…``) when it is not ASCII, and in the RFC 2047 form in
``name=`` for older clients.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from core.attachments.folder import FileProblem, open_inside, read_all
from core.attachments.specs import FileSpec

CRLF = b"\r\n"
# Inner-part headers of a built message: they move into its first part.
CONTENT_HEADERS = (b"content-type:", b"content-transfer-encoding:")


@dataclass(frozen=True, slots=True)
class Encoded:
    """One attachment ready to go: its MIME part (headers and base64 body) and evidence."""

    name: str
    size: int
    sha256: str
    part: bytes

    def evidence(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.size, "sha256": self.sha256}


def encode(spec: FileSpec, data: bytes) -> Encoded:
    body = base64.encodebytes(data).replace(b"\n", CRLF)
    part = _part_headers(spec) + CRLF + body
    return Encoded(spec.name, len(data), hashlib.sha256(data).hexdigest(), part)


def read(folder: str, spec: FileSpec) -> Encoded:
    """The file read now (FileProblem or FolderMissing when it cannot be), encoded."""
    with open_inside(folder, spec.path) as fd:
        return encode(spec, read_all(fd, os.fstat(fd).st_size))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _encoded_words(name: str) -> str:
    """``name`` as RFC 2047 encoded words of at most 75 characters, split between characters."""
    words, chunk = [], ""
    for char in name:
        if len((chunk + char).encode()) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return " ".join(
        "=?utf-8?b?" + base64.b64encode(word.encode()).decode("ascii") + "?=" for word in words
    )


def _rfc2231(name: str) -> list[str]:
    """``filename*`` parameters for a non-ASCII name, continued when long (RFC 2231)."""
    encoded = quote(name.encode("utf-8"), safe="!#$&+-.^_`|~")
    if len(encoded) <= 60:
        return [f"filename*=utf-8''{encoded}"]
    pieces, at = [], 0
    while at < len(encoded):
        end = min(at + 60, len(encoded))
        while end < len(encoded) and "%" in encoded[end - 2 : end]:
            end -= 1  # never split a %XX
        pieces.append(encoded[at:end])
        at = end
    return [
        f"filename*{n}*=" + ("utf-8''" if n == 0 else "") + piece for n, piece in enumerate(pieces)
    ]


def _part_headers(spec: FileSpec) -> bytes:
    name = spec.name
    if name.isascii():
        type_name, disposition = [f"name={_quoted(name)}"], [f"filename={_quoted(name)}"]
    else:
        type_name, disposition = [f"name={_quoted(_encoded_words(name))}"], _rfc2231(name)
    lines = [
        f"Content-Type: {spec.content_type};\r\n " + ";\r\n ".join(type_name),
        "Content-Disposition: attachment;\r\n " + ";\r\n ".join(disposition),
        "Content-Transfer-Encoding: base64",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def with_attachments(message: bytes, parts: list[Encoded]) -> bytes:
    """A built message (single part or multipart/alternative) as multipart/mixed: its
    body first, then ``parts``. Headers other than the content ones stay on top."""
    if not parts:
        return message
    head, separator, body = message.partition(CRLF + CRLF)
    if not separator:
        head, body = message, b""
    top: list[bytes] = []
    inner: list[bytes] = []
    current: list[bytes] | None = None
    for line in head.split(CRLF):
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)  # a folded header goes with the line before
            continue
        lower = line.lower()
        if lower.startswith(b"mime-version:"):
            current = None  # written once, below
        elif lower.startswith(CONTENT_HEADERS):
            current = inner
            inner.append(line)
        else:
            current = top
            top.append(line)
    boundary = ("=_msgrun_" + secrets.token_hex(12)).encode("ascii")
    if not body.endswith(CRLF):
        body += CRLF
    out = [
        CRLF.join(top),
        CRLF,
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="',
        boundary,
        b'"\r\n\r\n--',
        boundary,
        CRLF,
        CRLF.join(inner),
        CRLF + CRLF,
        body,
        CRLF,  # the CRLF before a boundary is the boundary's: the body keeps its own
    ]
    for encoded in parts:
        out += [b"--", boundary, CRLF, encoded.part]
    out += [b"--", boundary, b"--", CRLF]
    return b"".join(out)


@dataclass
class Attacher:
    """What a delivery's messages attach, read as each message is built.

    ``cache``: the definition's own files encoded, by path, with the size,
    modification time and inode they were read at."""

    folder: str | None
    attach_document_files: bool
    own: tuple[FileSpec, ...]
    cache: dict[str, tuple[tuple[int, int, int], Encoded]] = field(default_factory=dict)

    @property
    def attaching(self) -> bool:
        return self.attach_document_files or bool(self.own)

    def parts(self, document_files: tuple[FileSpec, ...]) -> list[Encoded]:
        """The encoded attachments of one message; FileProblem or FolderMissing when a file
        cannot be attached."""
        specs = document_files if self.attach_document_files else ()
        if not specs and not self.own:
            return []
        if self.folder is None:
            first = (*specs, *self.own)[0]
            raise FileProblem(first.path, "the organisation has no documents_folder")
        parts = [read(self.folder, spec) for spec in specs]
        parts += [self._own(spec) for spec in self.own]
        return parts

    def _own(self, spec: FileSpec) -> Encoded:
        assert self.folder is not None
        with open_inside(self.folder, spec.path) as fd:
            info = os.fstat(fd)
            stamp = (info.st_size, info.st_mtime_ns, info.st_ino)
            cached = self.cache.get(spec.path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            encoded = encode(spec, read_all(fd, info.st_size))
        self.cache[spec.path] = (stamp, encoded)
        return encoded
