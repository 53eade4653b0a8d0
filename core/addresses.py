"""Email addresses: validity, decided once, and the case-insensitive form.

Validity is syntax only (``reasons.md`` rule 4): RFC 5321/5322 syntax with a
domain of at least two labels, no DNS look-up; a local part over 64
characters is not valid. A quoted local part (``"a b"@example.org``) is refused
although RFC 5322 has it: the same mailbox would have two spellings
(``"ana"@`` and ``ana@``) that the suppression list and the ledger would tell
apart, and its quotes may hold what no header can carry (``<``, ``>``).
Domains reserved for testing or local use (``.test``, ``.example``,
``.invalid``, ``.localhost``, ``.local``, …) are valid: the server decides
whether it delivers there. email-validator refuses those as policy
("special-use or reserved name"), so its list of them is set aside while it
checks the syntax.
"""

from __future__ import annotations

import threading

import email_validator
from email_validator import EmailNotValidError, validate_email

_SPECIAL_USE_LOCK = threading.Lock()


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a syntactically valid email address, or None.

    Syntax only: no DNS look-up is made, so planning never touches the network.
    """
    with _SPECIAL_USE_LOCK:
        special_use = email_validator.SPECIAL_USE_DOMAIN_NAMES
        email_validator.SPECIAL_USE_DOMAIN_NAMES = []
        try:
            # globally_deliverable (the default) keeps the syntax of a public
            # domain: at least two labels (ana@gmailcom is invalid), a top-level
            # label that is not all digits.
            validate_email(
                address,
                check_deliverability=False,
                test_environment=False,
                strict=True,
            )
        except EmailNotValidError as error:
            return str(error)
        finally:
            email_validator.SPECIAL_USE_DOMAIN_NAMES = special_use
    return None


def fold(address: str) -> str:
    """The form every comparison of addresses uses (suppressions, history, duplicates)."""
    return address.lower()
