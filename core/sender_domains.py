"""Organisational domains and DMARC alignment (RFC 7489 3.2, 3.1), judged by the public
suffix list that the ``publicsuffixlist`` package bundles: nothing is fetched at run time.

``billing@mail.example.com`` aligns (relaxed) with ``example.com``, ``mail.example.com``
and ``news.example.com``, not with ``example.net``; a public suffix (``com.au``) is no
organisational domain of anything, so it never aligns.
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList

# Reserved for testing and local use (RFC 2606, 6761, 6762): never looked up in DNS.
RESERVED_SUFFIXES = ("test", "example", "invalid", "localhost", "local")
# RFC 2606's second-level names for documentation, reserved the same way.
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")


@lru_cache(maxsize=1)
def _list() -> PublicSuffixList:
    return PublicSuffixList()


def normal(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def domain_of(address: str) -> str:
    """The domain of an address (after the last @), lowercased."""
    return normal(address.rpartition("@")[2])


def is_public_suffix(domain: str) -> bool:
    return bool(_list().is_public(normal(domain)))


def organisational_domain(domain: str) -> str | None:
    """The registered domain under its public suffix (``example.com`` for
    ``mail.example.com``); None for a public suffix itself."""
    found = _list().privatesuffix(normal(domain))
    return str(found) if found else None


def aligned(one: str, other: str, *, strict: bool = False) -> bool:
    """Whether two domains align: equal under strict alignment, of the same
    organisational domain under relaxed."""
    one, other = normal(one), normal(other)
    if strict:
        return one == other and not is_public_suffix(one)
    organisation = organisational_domain(one)
    return organisation is not None and organisation == organisational_domain(other)


def is_reserved(domain: str) -> bool:
    """A domain for testing or local use (``.test``, ``.example`` …): not looked up."""
    name = normal(domain)
    if name.rpartition(".")[2] in RESERVED_SUFFIXES:
        return True
    return any(name == d or name.endswith("." + d) for d in RESERVED_DOMAINS)
