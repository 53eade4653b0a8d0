"""Reading reports back: bounces (DSNs and other formats), complaints, auto-replies.

No database and no console here: given a message's bytes, `classify` says what it
is and what it says about each recipient; `sources` reads messages from a Maildir,
a file, standard input or an IMAP folder; `verp` names a recipient in the
envelope sender and reads the name back.
"""

from core.bounces.classify import classify
from core.bounces.model import Outcome, OutcomeType, Report, ReportKind
from core.bounces.verp import VerpToken, parse_verp_token, verp_address, verp_token

__all__ = [
    "Outcome",
    "OutcomeType",
    "Report",
    "ReportKind",
    "VerpToken",
    "classify",
    "parse_verp_token",
    "verp_address",
    "verp_token",
]
