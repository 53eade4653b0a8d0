"""Errors turned into exit codes at the edge: 2 bad usage or input, 1 failure."""

from __future__ import annotations


class UsageError(Exception):
    """Bad usage or bad input: the message names what is wrong; nothing changed (exit 2)."""

    exit_code = 2


class OperationFailed(Exception):
    """The operation could not be done (exit 1)."""

    exit_code = 1
