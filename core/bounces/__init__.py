"""Reading reports back: bounces (DSNs and other formats), complaints, auto-replies.

No database and no console here: given a message's bytes, `classify` says what it
is and what it says about each recipient; `sources` reads messages from a Maildir,
a file, standard input or an IMAP folder. The VERP token that names a recipient
in the envelope sender is written and read back by `core.messages.verp`.
"""

from core.bounces.classify import classify
from core.bounces.model import Outcome, OutcomeType, Report, ReportKind

__all__ = [
    "Outcome",
    "OutcomeType",
    "Report",
    "ReportKind",
    "classify",
]
