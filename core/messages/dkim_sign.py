"""DKIM signatures (RFC 6376) on the messages of a profile that signs (inbox.md).

dkimpy (a well-kept DKIM library) canonicalises headers and body
(``c=relaxed/relaxed``) and hashes the headers the way its own signer does; the RSA step
is ``cryptography``'s (OpenSSL), several times faster than dkimpy's pure-Python RSA, so
that a signed run keeps most of an unsigned run's rate. Tests verify every kind of
message with Perl's Mail::DKIM, an implementation that shares no code with this one.

No ``l=`` (a body length limit lets anyone append to a signed message). A ``DkimSigner``
crosses into sender processes by pickling: it carries the key's PEM text in memory
only, and loads the key again where it signs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from core.dkim_keys import DkimSettings, private_key

# Signed when the message has them, in this order (inbox.md: at least From, To, Subject,
# Date, Message-ID, MIME-Version, Content-Type, and Reply-To, List-Unsubscribe,
# List-Unsubscribe-Post and Auto-Submitted where present). From is named twice, so that
# a From added on the way breaks the signature instead of riding on it.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"reply-to",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"auto-submitted",
    b"precedence",
)
B64_LINE = 72
# Where one header field ends and the next begins (a CRLF not followed by folding space).
FIELD_END = re.compile(rb"\r\n(?![ \t])")


class DkimSigner:
    """Signs messages for one profile's ``domain`` and ``selector``."""

    def __init__(self, settings: DkimSettings, pem: bytes) -> None:
        self.settings = settings
        self.pem = pem
        self._key: rsa.RSAPrivateKey = private_key(pem, settings)
        # dkimpy is imported by a signer, not by every msgrun command that starts.
        import dkim
        from dkim.canonicalization import CanonicalizationPolicy

        self._dkim = dkim
        self._relaxed = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        self._domain = settings.domain.encode("ascii")
        self._selector = settings.selector.encode("ascii")

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "pem": self.pem}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"], state["pem"])  # type: ignore[misc]

    def sign(self, message: bytes, now: datetime) -> bytes:
        """``message`` with a DKIM-Signature header in front."""
        head, _, body = message.partition(b"\r\n\r\n")
        headers = [
            (name, value)
            for name, _, value in (line.partition(b":") for line in FIELD_END.split(head))
        ]
        present = {name.lower() for name, _ in headers}
        signed = [name for name in SIGNED_HEADERS if name in present]
        signed.insert(0, b"from")
        dkim, relaxed = self._dkim, self._relaxed
        body_hash = base64.b64encode(hashlib.sha256(relaxed.canonicalize_body(body)).digest())
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", b"relaxed/relaxed"),
            (b"d", self._domain),
            (b"s", self._selector),
            (b"t", str(int(now.timestamp())).encode("ascii")),
            (b"h", b" : ".join(signed)),
            (b"bh", body_hash),
        ]
        value = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len("DKIM-Signature"))
        value = value + b";\r\n b="
        digest = hashlib.sha256()
        dkim.hash_headers(
            digest,
            relaxed,
            relaxed.canonicalize_headers(headers),
            signed,
            (b"DKIM-Signature", b" " + value),
            None,
        )
        signature = self._key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        b64 = base64.b64encode(signature)
        lines = [b64[i : i + B64_LINE] for i in range(0, len(b64), B64_LINE)]
        result: bytes = b"DKIM-Signature: " + value + b"\r\n ".join(lines) + b"\r\n" + message
        return result
