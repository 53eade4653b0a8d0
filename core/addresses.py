"""Email addresses: validity, decided once, and the case-insensitive form."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a syntactically valid email address, or None.

    Syntax only: no DNS look-up is made, so planning never touches the network.
    """
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        return str(error)
    return None


def fold(address: str) -> str:
    """The form every comparison of addresses uses (suppressions, history, duplicates)."""
    return address.lower()
