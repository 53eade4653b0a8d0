"""The reason codes of reasons.md, in its table order, each with its fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


class Reason:
    """Why a candidate is excluded: a stable code and a sentence with the data that decided.

    A rule decides a million candidates where only some are ever read (a plan's counts
    need the codes alone), so it may give the sentence as a ``str.format`` template and
    its values (``Reason.later``): the sentence is written when ``detail`` is first read,
    the same text the rule would have written at once.
    """

    __slots__ = ("_text", "_values", "code", "run")

    def __init__(self, code: str, detail: str, run: int | None = None) -> None:
        self.code = code
        self._text = detail
        self._values: tuple[object, ...] | None = None
        # The run that holds the ledger entry (already_sent, already_targeted), if one does.
        self.run = run

    @classmethod
    def later(
        cls, code: str, template: str, values: tuple[object, ...], run: int | None = None
    ) -> Reason:
        """A reason whose detail is ``template.format(*values)``, written when first read."""
        reason = cls.__new__(cls)
        reason.code = code
        reason._text = template
        reason._values = values
        reason.run = run
        return reason

    @property
    def detail(self) -> str:
        if self._values is not None:
            self._text = self._text.format(*self._values)
            self._values = None
        return self._text

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}

    def _key(self) -> tuple[str, str, int | None]:
        return (self.code, self.detail, self.run)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reason):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Reason(code={self.code!r}, detail={self.detail!r}, run={self.run!r})"


@dataclass(frozen=True, slots=True)
class ReasonCode:
    number: int
    code: str
    fix: str


REASON_CODES: Final = (
    ReasonCode(1, "sender_not_verified", "Finish verifying the organisation's sending account."),
    ReasonCode(
        2, "auto_send_disabled", "Turn the organisation's outbound toggle for this kind on."
    ),
    ReasonCode(3, "no_address_for_key", "Add an address under the definition's address key."),
    ReasonCode(4, "invalid_address", "Correct the address."),
    ReasonCode(
        5,
        "suppressed",
        "Lift the suppression once the cause is gone; for a spam complaint, the customer "
        "first marks the sender as trusted.",
    ),
    ReasonCode(6, "contact_email_not_allowed", "Allow email on the contact."),
    ReasonCode(7, "address_preference_off", "Turn the address's preference on."),
    ReasonCode(8, "contact_preference_off", "Change the contact's communication preference."),
    ReasonCode(
        9, "cluster_not_targeted", "Move the customer, or add the cluster to the definition."
    ),
    ReasonCode(
        10,
        "audience_mismatch",
        "Use a definition (or a manual run) meant for this group, or correct the attributes.",
    ),
    ReasonCode(
        11,
        "document_status_not_targeted",
        "Approve the document, or add its status to the definition.",
    ),
    ReasonCode(
        12,
        "service_status_not_allowed",
        "Reactivate the service, or allow its status on the billing method.",
    ),
    ReasonCode(13, "service_email_not_allowed", "Allow billing email on the service."),
    ReasonCode(14, "billing_method_has_no_rules", "Add send rules to the billing method."),
    ReasonCode(15, "billing_rule_not_due", "Wait for a rule's day, or add a rule for this offset."),
    ReasonCode(
        16, "already_sent", "Nothing: it was sent. Re-send explicitly if it is wanted again."
    ),
    ReasonCode(
        17,
        "already_targeted",
        "Use a different definition, or re-send explicitly.",
    ),
    ReasonCode(18, "in_another_run", "Wait for that run to end, or stop it."),
    ReasonCode(19, "document_file_missing", "Generate the document's PDF, or correct its path."),
    ReasonCode(20, "message_too_large", "Send a link instead, or a smaller file."),
)
CODES: Final = tuple(entry.code for entry in REASON_CODES)
ORDER: Final = {entry.code: entry.number for entry in REASON_CODES}
FIXES: Final = {entry.code: entry.fix for entry in REASON_CODES}


def fix_for(code: str) -> str:
    return FIXES[code]
