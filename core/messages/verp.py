"""VERP: the recipient named in the envelope sender, `local+TOKEN@domain`.

A token is `R<run>-<position>-<check>`: the run id and the recipient's position
(a number the caller chooses, e.g. the recipient id) in base 36, and a 4-character
check (base 36 of a CRC-32 of both) so that a random `local+something` address is
never taken for one of ours. Letters, digits and `-` only.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN = re.compile(r"^r([0-9a-z]{1,13})-([0-9a-z]{1,13})-([0-9a-z]{4})$")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9.=_-]+$")
MAX_LOCAL_PART = 64
# The longest token (both numbers of 13 base-36 digits: any 64-bit id), and so the longest
# local part a bounce address may have for `local+TOKEN` to fit MAX_LOCAL_PART.
MAX_TOKEN = len("r") + 13 + len("-") + 13 + len("-") + 4
MAX_BOUNCE_LOCAL_PART = MAX_LOCAL_PART - len("+") - MAX_TOKEN


@dataclass(frozen=True)
class VerpToken:
    run_id: int
    recipient: int


def _b36(n: int) -> str:
    if n < 0:
        raise ValueError("VERP numbers are not negative")
    digits = ""
    while True:
        n, r = divmod(n, 36)
        digits = _ALPHABET[r] + digits
        if n == 0:
            return digits


def _check(run: str, recipient: str) -> str:
    crc = zlib.crc32(f"msgrun:{run}:{recipient}".encode()) % (36**4)
    return _b36(crc).rjust(4, "0")


def verp_token(run_id: int, recipient: int) -> str:
    run, rcpt = _b36(run_id), _b36(recipient)
    return f"r{run}-{rcpt}-{_check(run, rcpt)}"


def verp_address(bounce_address: str, token: str) -> str:
    """`bounces@mail.example.com` + token → `bounces+TOKEN@mail.example.com`."""
    local, sep, domain = bounce_address.rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"bounce address {bounce_address!r} is not an address")
    if not _TOKEN_CHARS.match(token):
        raise ValueError(f"VERP token {token!r} may hold only letters, digits, . - = _")
    local = f"{local}+{token}"
    if len(local) > MAX_LOCAL_PART:
        raise ValueError(f"VERP local part {local!r} is longer than {MAX_LOCAL_PART} characters")
    return f"{local}@{domain}"


def parse_verp_token(address: str) -> VerpToken | None:
    """The recipient named by `local+TOKEN@domain`, or None when it names none of ours."""
    address = address.strip().strip("<>").strip()
    local, sep, _domain = address.rpartition("@")
    if not sep or "+" not in local:
        return None
    token = local.rsplit("+", 1)[1].lower()
    m = _TOKEN.match(token)
    if not m:
        return None
    run, rcpt, check = m.groups()
    if _check(run, rcpt) != check:
        return None
    return VerpToken(run_id=int(run, 36), recipient=int(rcpt, 36))
