"""A server that refuses everyone, a template that fails for everyone (domain.md), files
missing for everyone (attachments.md): when one delivering process has seen enough of the
same failure in a row to call it a fault of the profile (or of the definition) rather
than of its recipients.

Pure: the caller feeds each recipient's outcome, in the order its results are
recorded, and asks ``fault_of``.

- Replies: 20 recipients in a row refused with the same 5xx reply. Replies are
  the same when their code, enhanced status and text agree once addresses and
  ``<…>`` are taken out and whitespace collapsed. A 2xx, a 4xx or a different
  5xx starts the count again; a mailbox status (5.1.x, 5.2.x), which concerns
  one recipient, is skipped: neither counted nor starting it again. So is a
  verdict of msgrun's own ("msgrun: …"), which the server never said.
- Templates: 20 recipients in a row whose message failed to build with the
  same error (compared as replies are); a message built (answered, or too
  large: msgrun's verdict on that message alone) starts the count again, and so
  does one whose template rendered but whose file was missing (its message got
  past the template).
- Files: 20 recipients in a row whose message was not built because a file it
  attaches was missing or unreadable (``document_file_missing``), whichever
  file it was. A message built (answered, refused, too large, or cut off by
  the connection) starts the count again; a template failure is skipped: its
  message never got as far as its files, so it tells nothing about them.

The two kinds of failure are separate counts: a run whose files are gone ends
saying so, not that its template failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

IN_A_ROW: Final = 20

ENHANCED_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})(?!\S)")
ANGLED = re.compile(r"<[^<>]*>")
ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
# The missing files a run's reason names; one more than that is said as "and others".
NAMED: Final = 3
MAILBOX_STATUSES: Final = ("5.1.", "5.2.")
OWN_VERDICT: Final = "msgrun:"


def same_words(text: str) -> str:
    """``text`` with addresses and ``<…>`` taken out and whitespace collapsed."""
    return " ".join(ADDRESS.sub(" ", ANGLED.sub(" ", text)).split())


def reply_key(code: int, text: str) -> tuple[int, str, str] | None:
    """What makes two 5xx replies the same (code, enhanced status, words); None for a
    reply that is skipped (a mailbox status, msgrun's own verdict)."""
    if text.startswith(OWN_VERDICT):
        return None
    status = ""
    match = ENHANCED_STATUS.match(text)
    if match is not None:
        status = match.group(1)
        text = text[match.end() :]
        if status.startswith(MAILBOX_STATUSES):
            return None
    return (code, status, same_words(text))


@dataclass(frozen=True, slots=True)
class Streak:
    """The same refusal, ``count`` times in a row; ``said`` is the last, as it was said."""

    key: object = None
    count: int = 0
    said: str = ""


NONE: Final = Streak()


def after_reply(streak: Streak, code: int, text: str) -> Streak:
    """The refusals streak after a recipient's reply ``code`` ``text``."""
    if not 500 <= code < 600:
        return NONE
    key = reply_key(code, text)
    if key is None:
        return streak
    said = " ".join(f"{code} {text}".split())
    if key == streak.key:
        return Streak(key, streak.count + 1, said)
    return Streak(key, 1, said)


def after_render_failure(streak: Streak, error: str) -> Streak:
    """The render failures streak after a recipient whose message failed to build."""
    key = same_words(error)
    said = " ".join(error.split())
    if key == streak.key:
        return Streak(key, streak.count + 1, said)
    return Streak(key, 1, said)


def after_missing_file(streak: Streak, detail: str) -> Streak:
    """The missing files streak after a recipient whose file was missing (``detail``:
    the path and why). Its key holds the first ``NAMED`` details seen, to be named."""
    said = " ".join(detail.split())
    named: tuple[str, ...] = streak.key if isinstance(streak.key, tuple) else ()
    if said not in named and len(named) <= NAMED:
        named = (*named, said)
    return Streak(named, streak.count + 1, said)


def refusals_fault(streak: Streak) -> str | None:
    """The run's reason to fail, once the server has refused ``IN_A_ROW`` alike."""
    if streak.count < IN_A_ROW:
        return None
    return (
        f"the server refused {streak.count} recipients in a row with the same reply: "
        f"{streak.said} (a fault of the profile or the server, not of the recipients: "
        "once it is fixed, run restart sends those not tried and run follow-up the refused)"
    )


def render_fault(streak: Streak) -> str | None:
    """The run's reason to fail, once the template has failed ``IN_A_ROW`` times alike."""
    if streak.count < IN_A_ROW:
        return None
    return (
        f"the template failed for {streak.count} recipients in a row with the same error: "
        f"{streak.said} (a fault of the definition: once its template is fixed, run "
        "restart sends those not tried and run follow-up the failed)"
    )


def missing_files_fault(streak: Streak, folder: str | None) -> str | None:
    """The run's reason to fail, once files were missing ``IN_A_ROW`` times in a row."""
    if streak.count < IN_A_ROW:
        return None
    named: tuple[str, ...] = streak.key if isinstance(streak.key, tuple) else (streak.said,)
    files = "; ".join(named[:NAMED]) + ("; and others" if len(named) > NAMED else "")
    where = f"in the documents folder {folder}; " if folder else ""
    return (
        f"files to attach were missing or unreadable for {streak.count} recipients in a "
        f"row: {files} ({where}a fault of the definition, not of the recipients: once the "
        "files are back, run restart sends those not tried and run follow-up the failed)"
    )


def folder_fault(missing: str) -> str:
    """The run's reason to fail when its documents folder is missing altogether."""
    return (
        f"{missing} (a fault of the definition: nothing can be attached; once the folder "
        "is back, or the organisation's documents_folder corrected by an import, run "
        "restart sends those not tried)"
    )
