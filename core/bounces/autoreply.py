"""Auto-replies (RFC 3834 and out-of-office habits), and whether a message comes
from a delivery system rather than a person's mailbox."""

from __future__ import annotations

import re
from email.message import Message

from core.bounces.message import address_of, envelope_sender, header

# Local parts and display names of delivery systems (their bounces are sometimes
# marked Auto-Submitted too).
_DAEMON_LOCAL = re.compile(
    r"^(mailer[-._]?daemon|mail[-._]?daemon|postmaster|mdaemon|mail[-._]?delivery[-._]?"
    r"(?:system|subsystem)|maildelivery|double[-._]?bounce|bounces?|"
    r"mail[-._]?administrator|mailadmin|mail[-._]?router|smtp[-._]?gateway|"
    r"nobody|root)$",
    re.IGNORECASE,
)
_DAEMON_NAME = re.compile(
    r"mail(?:er)?[- ]?daemon|mail delivery (?:system|subsystem)|postmaster|"
    r"mail administrator|delivery status notification|mail delivery failure",
    re.IGNORECASE,
)

# Subjects of out-of-office replies, at the start of the subject.
_OUT_OF_OFFICE = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|fw|tr|r)\s*:\s*)*(?:\[[^]]*\]\s*)?(?:"
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|"
    r"automated response|away from (?:the )?office|on vacation|vacation|on leave|"
    r"i am away|i'm away|absence|absent|"
    r"abwesenheitsnotiz|automatische antwort|abwesend|nicht im b[üu]ro|"
    r"resposta autom[áa]tica|ausente|fora do escrit[óo]rio|f[ée]rias|"
    r"r[ée]ponse automatique|absent du bureau|"
    r"respuesta autom[áa]tica|fuera de la oficina|"
    r"risposta automatica|fuori ufficio|"
    r"automatisch antwoord|afwezig|"
    r"automatiskt svar|autosvar|fr[åa]nvaro|"
    r"自動応答|自動返信|不在|休暇|自动回复|자동 ?응답|"
    r"автоответ|автоматический ответ"
    r")",
    re.IGNORECASE,
)


def auto_reply_marker(msg: Message) -> str | None:
    """What marks the message as an automatic reply, or None."""
    submitted = header(msg, "Auto-Submitted").lower()
    if submitted and not submitted.startswith("no"):
        return f"Auto-Submitted: {submitted}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse", "X-Autoresponder"):
        if msg.get(name) is not None:
            return name
    if header(msg, "Precedence").lower() == "auto_reply":
        return "Precedence: auto_reply"
    if header(msg, "X-Auto-Response-Suppress") and msg.get("X-MS-Exchange-Inbox-Rules-Loop"):
        return "X-MS-Exchange-Inbox-Rules-Loop"
    subject = header(msg, "Subject")
    if _OUT_OF_OFFICE.match(subject):
        return f"an out-of-office subject ({subject[:60]})"
    return None


def from_delivery_system(msg: Message) -> bool:
    """A null envelope sender, or a From of MAILER-DAEMON, postmaster and the like."""
    return envelope_sender(msg) == "" or from_daemon_address(msg)


def is_daemon_local(local: str) -> bool:
    return bool(_DAEMON_LOCAL.match(local))


def from_daemon_address(msg: Message) -> bool:
    """A From of MAILER-DAEMON, postmaster and the like (not only a null sender)."""
    sender = header(msg, "From")
    addr = address_of(sender)
    if addr and _DAEMON_LOCAL.match(addr.rsplit("@", 1)[0]):
        return True
    name = sender.split("<", 1)[0] if "<" in sender else ("" if addr else sender)
    return bool(_DAEMON_NAME.search(name))
