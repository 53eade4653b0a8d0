"""Where reports are read from: a Maildir, a file, standard input, an IMAP folder.

`check_source` validates a SOURCE argument without reading anything (so that
every source can be checked before any is read); `Source.read()` yields each
message with a callback that marks it as read (a Maildir moves it from new/ to
cur/ and adds the seen flag; IMAP flags it \\Seen). Only reports are to be
marked: the caller calls `mark_read` for those and never for anything else.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import ssl
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from core import settings
from core.passwords import find_password, missing

_HEADER_LINE = re.compile(rb"^(?:From |[!-9;-~]+:)")


class SourceError(Exception):
    """The source does not exist or is not a Maildir, a message or an IMAP URL."""


class SourceUnavailable(Exception):
    """The IMAP server could not be reached, or refused the login."""


@dataclass(frozen=True)
class SourceMessage:
    source: str  # the file's path, "-", or FOLDER/UID
    raw: bytes
    mark_read: Callable[[], None]


def _nothing() -> None:
    return None


class Source:
    """Something to read messages from."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    def read(self) -> Iterator[SourceMessage]:
        raise NotImplementedError


# --- Maildir -----------------------------------------------------------------------


def _seen_name(name: str) -> str:
    """The file name with the seen flag: `unique:2,FLAGS` with S among FLAGS."""
    base, sep, info = name.partition(":2,")
    flags = set(info) if sep else set()
    flags.add("S")
    return f"{base}:2,{''.join(sorted(flags))}"


@dataclass
class MaildirSource(Source):
    path: Path

    @property
    def name(self) -> str:
        return str(self.path)

    def read(self) -> Iterator[SourceMessage]:
        # Listed before anything is read: a message moved from new/ to cur/ while
        # reading is not read twice.
        listing = [
            (sub, entry)
            for sub in ("new", "cur")
            for entry in sorted((self.path / sub).iterdir(), key=lambda p: p.name)
            if not entry.name.startswith(".") and entry.is_file()
        ]
        for sub, entry in listing:
            try:
                raw = entry.read_bytes()
            except FileNotFoundError:  # moved by another reader meanwhile
                continue
            yield SourceMessage(str(entry), raw, self._marker(entry, sub))

    def _marker(self, entry: Path, sub: str) -> Callable[[], None]:
        def mark_read() -> None:
            target = self.path / "cur" / _seen_name(entry.name)
            if sub == "cur" and target == entry:
                return
            with contextlib.suppress(FileNotFoundError):  # another reader moved it first
                os.rename(entry, target)

        return mark_read


# --- a file, standard input ----------------------------------------------------------


@dataclass
class FileSource(Source):
    path: Path

    @property
    def name(self) -> str:
        return str(self.path)

    def read(self) -> Iterator[SourceMessage]:
        yield SourceMessage(str(self.path), self.path.read_bytes(), _nothing)


@dataclass
class StdinSource(Source):
    stream: BinaryIO | None = None

    @property
    def name(self) -> str:
        return "-"

    def read(self) -> Iterator[SourceMessage]:
        stream = self.stream if self.stream is not None else sys.stdin.buffer
        yield SourceMessage("-", stream.read(), _nothing)


# --- IMAP ----------------------------------------------------------------------------


@dataclass
class ImapSource(Source):
    url: str
    secure: bool
    user: str
    password: str
    host: str
    port: int
    folder: str
    cafile: Path | None = None  # trusted besides the system's (MSGRUN_IMAP_CAFILE)
    timeout: float = 30.0

    @property
    def name(self) -> str:
        return self.url

    def _connect(self) -> imaplib.IMAP4:
        try:
            if self.secure:
                context = ssl.create_default_context()
                if self.cafile is not None:
                    context.load_verify_locations(self.cafile)
                return imaplib.IMAP4_SSL(
                    self.host, self.port, ssl_context=context, timeout=self.timeout
                )
            return imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            raise SourceUnavailable(
                f"{self.url}: cannot reach the IMAP server {self.host}:{self.port}: {exc}"
            ) from exc

    def read(self) -> Iterator[SourceMessage]:
        conn = self._connect()
        try:
            try:
                conn.login(self.user, self.password)
            except (imaplib.IMAP4.error, OSError) as exc:
                raise SourceUnavailable(
                    f"{self.url}: the IMAP server refused the login of {self.user}: {_words(exc)}"
                ) from exc
            status, _ = conn.select(_quote(self.folder))
            if status != "OK":
                raise SourceUnavailable(f"{self.url}: there is no folder {self.folder!r}")
            status, data = conn.uid("SEARCH", "ALL")
            uids = data[0].split() if status == "OK" and data and data[0] else []
            for uid in uids:
                status, parts = conn.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                raw = next((p[1] for p in parts if isinstance(p, tuple)), None)
                if status != "OK" or not isinstance(raw, bytes):
                    continue
                name = f"{self.folder}/{uid.decode()}"
                yield SourceMessage(name, raw, self._marker(conn, uid))
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise SourceUnavailable(f"{self.url}: the IMAP connection failed: {exc}") from exc
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                conn.logout()

    @staticmethod
    def _marker(conn: imaplib.IMAP4, uid: bytes) -> Callable[[], None]:
        def mark_read() -> None:
            conn.uid("STORE", uid.decode(), "+FLAGS", "(\\Seen)")

        return mark_read


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _words(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)


def parse_imap_url(url: str, environ: Mapping[str, str]) -> ImapSource:
    parts = urlsplit(url)
    secure = parts.scheme == "imaps"
    try:
        port = parts.port
    except ValueError as exc:
        raise SourceError(f"{url}: the port is not a number") from exc
    if not parts.username or not parts.hostname:
        raise SourceError(f"{url}: an IMAP source is imap://USER@HOST[:PORT]/FOLDER")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    password = find_password(settings.IMAP_PASSWORD, environ)
    if password is None and parts.password:
        password = unquote(parts.password)
    if password is None:
        raise SourceError(f"{url}: no IMAP password: {missing(settings.IMAP_PASSWORD, environ)}")
    return ImapSource(
        url=url,
        secure=secure,
        user=unquote(parts.username),
        password=password,
        host=parts.hostname,
        port=port or (993 if secure else 143),
        folder=folder,
        cafile=settings.imap_cafile(environ) if secure else None,
    )


# --- checking a SOURCE argument ------------------------------------------------------


def check_source(
    spec: str, environ: Mapping[str, str] | None = None, stdin: BinaryIO | None = None
) -> Source:
    """The source a SOURCE argument names; SourceError when it names none."""
    env = os.environ if environ is None else environ
    if spec == "-":
        return StdinSource(stdin)
    if re.match(r"^imaps?://", spec, re.IGNORECASE):
        return parse_imap_url(spec, env)
    if "://" in spec:
        raise SourceError(f"{spec}: not a Maildir, a message file or an imap:// or imaps:// URL")
    path = Path(spec)
    if path.is_dir():
        missing_dirs = [d for d in ("cur", "new", "tmp") if not (path / d).is_dir()]
        if missing_dirs:
            raise SourceError(
                f"{spec}: a folder but not a Maildir (no {', '.join(missing_dirs)}/ in it)"
            )
        return MaildirSource(path)
    if not path.exists():
        raise SourceError(f"{spec}: no such file or folder")
    if not path.is_file():
        raise SourceError(f"{spec}: not a Maildir or a message file")
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise SourceError(f"{spec}: cannot be read: {exc.strerror}") from exc
    if not _HEADER_LINE.match(head.lstrip(b"\r\n")):
        raise SourceError(f"{spec}: not an email message (it does not begin with a header)")
    return FileSource(path)


__all__ = [
    "FileSource",
    "ImapSource",
    "MaildirSource",
    "Source",
    "SourceError",
    "SourceMessage",
    "SourceUnavailable",
    "StdinSource",
    "check_source",
]
