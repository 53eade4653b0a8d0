"""VERP: the envelope sender names the recipient; the token reads back."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.messages.verp import VerpToken, parse_verp_token, verp_address, verp_token


def test_address_shape() -> None:
    token = verp_token(7, 28)
    assert re.fullmatch(r"[A-Za-z0-9.=_-]+", token)
    address = verp_address("bounces@mail.example.com", token)
    assert address == f"bounces+{token}@mail.example.com"
    assert parse_verp_token(address) == VerpToken(run_id=7, recipient=28)


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_round_trip_and_local_part_limit(run_id: int, recipient: int) -> None:
    address = verp_address("bounces@mail.example.com", verp_token(run_id, recipient))
    assert len(address.split("@")[0]) <= 64
    assert parse_verp_token(address) == VerpToken(run_id, recipient)


def test_read_back_whatever_the_case_and_brackets() -> None:
    address = verp_address("Bounces@Mail.Example.com", verp_token(12345, 678))
    assert parse_verp_token("<" + address.upper() + ">") == VerpToken(12345, 678)


@pytest.mark.parametrize(
    "address",
    [
        "bounces@mail.example.com",
        "bounces+newsletter@mail.example.com",
        "bounces+r7-s@mail.example.com",
        "ana+r7-s-0000@example.org",  # the right shape, a wrong check
        "not an address",
        "",
    ],
)
def test_addresses_that_name_no_recipient(address: str) -> None:
    assert parse_verp_token(address) is None


def test_a_changed_token_is_refused_by_its_check() -> None:
    token = verp_token(7, 28)
    other = verp_token(7, 29)
    forged = token.rsplit("-", 1)[0] + "-" + other.rsplit("-", 1)[1]
    assert parse_verp_token(f"b+{forged}@x.example") is None


def test_bad_bounce_address_or_token_or_too_long() -> None:
    with pytest.raises(ValueError, match="not an address"):
        verp_address("bounces", "r1-1-0000")
    with pytest.raises(ValueError, match="letters, digits"):
        verp_address("bounces@mail.example.com", "a+b")
    with pytest.raises(ValueError, match="64"):
        verp_address("b" * 50 + "@mail.example.com", verp_token(10**12, 10**12))


def test_the_longest_bounce_address_import_takes_fits_the_longest_token() -> None:
    """Import refuses a bounce address whose local part leaves no room for a token: the
    longest it takes, with the token of the largest ids, is still a valid envelope sender."""
    from core.messages.verp import MAX_BOUNCE_LOCAL_PART, MAX_LOCAL_PART, MAX_TOKEN

    largest = verp_token(2**63 - 1, 2**63 - 1)
    assert len(largest) == MAX_TOKEN
    address = verp_address("b" * MAX_BOUNCE_LOCAL_PART + "@example.org", largest)
    assert len(address.rpartition("@")[0]) == MAX_LOCAL_PART
    assert parse_verp_token(address) == VerpToken(2**63 - 1, 2**63 - 1)
