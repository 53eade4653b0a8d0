"""Errors turned into exit codes at the edge: 2 bad usage or input, 1 failure."""

from __future__ import annotations


class UsageError(Exception):
    """Bad usage or bad input: the message names what is wrong; nothing changed (exit 2)."""

    exit_code = 2


class OperationFailed(Exception):
    """The operation could not be done (exit 1)."""

    exit_code = 1


def first_line(error: BaseException) -> str:
    """An error in one line: a database error's own words, without the SQL that failed."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__
