"""A server that refuses everyone, a template that fails for everyone (domain.md): when
one delivering process has seen enough of the same refusal in a row to call it a fault
of the profile (or of the definition) rather than of its recipients.

Pure: the caller feeds each recipient's outcome, in the order its results are
recorded, and asks ``fault_of``.

- Replies: 20 recipients in a row refused with the same 5xx reply. Replies are
  the same when their code, enhanced status and text agree once addresses and
  ``<…>`` are taken out and whitespace collapsed. A 2xx, a 4xx or a different
  5xx starts the count again; a mailbox status (5.1.x, 5.2.x), which concerns
  one recipient, is skipped: neither counted nor starting it again. So is a
  verdict of msgrun's own ("msgrun: …"), which the server never said.
- Templates: 20 recipients in a row whose message failed to build with the
  same error (compared as replies are); a message built and answered starts
  the count again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

IN_A_ROW: Final = 20

ENHANCED_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})(?!\S)")
ANGLED = re.compile(r"<[^<>]*>")
ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
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
