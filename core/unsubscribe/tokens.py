"""Unsubscribe tokens: a run and a recipient's position in it, and an HMAC-SHA256 (the
database's own secret, made by its migration) over both, in lowercase letters and
digits only (mail systems may change a local part's case), at most 40 characters:
``L RUN POSITION MAC``, where L is the length of RUN (base 36), RUN and POSITION in
base 36, and MAC the first 16 characters of the HMAC in lowercase base 32 (80 bits)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from sqlalchemy import Connection, select

from core.storage.models import MsgrunSecret, table_of

DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
MAC_LENGTH = 16
MAX_LENGTH = 40
TOKEN = re.compile(r"[0-9a-z]{19,40}")


def _base36(number: int) -> str:
    if number == 0:
        return "0"
    text = ""
    while number:
        number, digit = divmod(number, 36)
        text = DIGITS[digit] + text
    return text


def _mac(secret: str, run_id: int, position: int) -> str:
    digest = hmac.new(
        secret.encode("ascii"), f"unsubscribe:{run_id}:{position}".encode("ascii"), hashlib.sha256
    ).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:MAC_LENGTH]


def make_token(secret: str, run_id: int, position: int) -> str:
    run = _base36(run_id)
    token = _base36(len(run)) + run + _base36(position) + _mac(secret, run_id, position)
    assert len(token) <= MAX_LENGTH
    return token


def read_token(secret: str, token: str) -> tuple[int, int] | None:
    """The (run id, position) a token names, or None when it does not verify."""
    token = token.strip().lower()
    if not TOKEN.fullmatch(token):
        return None
    length = DIGITS.index(token[0])
    run, rest = token[1 : 1 + length], token[1 + length :]
    position, mac = rest[:-MAC_LENGTH], rest[-MAC_LENGTH:]
    if not run or not position or len(mac) != MAC_LENGTH:
        return None
    run_id, number = int(run, 36), int(position, 36)
    if not hmac.compare_digest(mac, _mac(secret, run_id, number)):
        return None
    return run_id, number


def database_secret(connection: Connection) -> str:
    """The unsubscribe secret the migration made for this database."""
    table = table_of(MsgrunSecret)
    value = connection.execute(
        select(table.c.value).where(table.c.name == "unsubscribe")
    ).scalar_one()
    return str(value)
