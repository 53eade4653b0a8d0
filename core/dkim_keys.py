"""A profile's DKIM settings and its private key (inbox.md, Signing).

The key itself is never stored: a profile names a PEM file (``private_key_file``) or an
environment variable holding the PEM text (``private_key_env``), read when a delivery
starts (and by ``smtp test``). A key that cannot be used is a ``DkimKeyError`` whose text
says why, without the key; the delivery makes it a fault of the profile.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ALGORITHMS = ("rsa-sha256",)
MIN_BITS = 2048


class DkimKeyError(Exception):
    """The profile's DKIM key cannot be used (missing, unreadable, not RSA ≥ 2048 bits)."""


@dataclass(frozen=True, slots=True)
class DkimSettings:
    domain: str
    selector: str
    private_key_file: str | None = None
    private_key_env: str | None = None
    algorithm: str = "rsa-sha256"

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> DkimSettings | None:
        if not value:
            return None
        return cls(
            domain=str(value["domain"]),
            selector=str(value["selector"]),
            private_key_file=value.get("private_key_file"),
            private_key_env=value.get("private_key_env"),
            algorithm=str(value.get("algorithm") or "rsa-sha256"),
        )

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"domain": self.domain, "selector": self.selector}
        if self.private_key_file is not None:
            value["private_key_file"] = self.private_key_file
        if self.private_key_env is not None:
            value["private_key_env"] = self.private_key_env
        value["algorithm"] = self.algorithm
        return value

    @property
    def record_name(self) -> str:
        """Where the public key is published: ``SELECTOR._domainkey.DOMAIN``."""
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def source(self) -> str:
        if self.private_key_file is not None:
            return f"key file {self.private_key_file}"
        return f"environment variable {self.private_key_env}"


def read_pem(settings: DkimSettings, environ: Mapping[str, str]) -> bytes:
    """The PEM text of the profile's key, checked to be an RSA key of at least 2048
    bits; DkimKeyError saying what is wrong."""
    if settings.private_key_file is not None:
        try:
            with open(settings.private_key_file, "rb") as file:
                pem = file.read()
        except FileNotFoundError:
            raise DkimKeyError(
                f"DKIM key file {settings.private_key_file} does not exist"
            ) from None
        except OSError as error:
            raise DkimKeyError(
                f"DKIM key file {settings.private_key_file} cannot be read: "
                f"{error.strerror or error}"
            ) from None
    else:
        name = settings.private_key_env or ""
        text = environ.get(name, "")
        if not text.strip():
            raise DkimKeyError(f"environment variable {name} (the DKIM key) is not set")
        pem = text.encode("utf-8")
    private_key(pem, settings)
    return pem


def private_key(pem: bytes, settings: DkimSettings) -> rsa.RSAPrivateKey:
    """The key of ``pem``; DkimKeyError unless an RSA private key of 2048 bits or more."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise DkimKeyError(f"the {settings.source} holds no PEM private key") from None
    except Exception:  # cryptography's UnsupportedAlgorithm and kin
        raise DkimKeyError(f"the {settings.source} holds no usable private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError(f"the {settings.source} holds no RSA private key")
    if key.key_size < MIN_BITS:
        raise DkimKeyError(
            f"the {settings.source} holds an RSA key of {key.key_size} bits "
            f"(DKIM keys need {MIN_BITS} or more)"
        )
    return key


def public_record(key: rsa.RSAPrivateKey) -> str:
    """The TXT value to publish for the key: ``v=DKIM1; k=rsa; p=…``."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def public_base64(key: rsa.RSAPrivateKey) -> str:
    return public_record(key).rpartition("p=")[2]
