"""DKIM in tests: keys made here, and Perl's Mail::DKIM (Debian's libmail-dkim-perl,
installed by scripts/setup) verifying a message against a DNS server of the test's own
(``tests.dns_server``): an implementation that shares no code with msgrun's signer."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from core.dkim_keys import public_record
from tests.dns_server import DnsServer

VERIFY = r"""
use strict; use Mail::DKIM::Verifier; use Net::DNS::Resolver;
my ($port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port));
binmode STDIN; local $/ = "\0";
while (my $message = <STDIN>) {
    chomp $message;
    my $v = Mail::DKIM::Verifier->new();
    $v->PRINT($message); $v->CLOSE;
    my @out = map { $_->result . " d=" . $_->domain . " " . ($_->result_detail // "") }
              $v->signatures;
    print join("|", @out), "\n";
}
"""


@lru_cache(maxsize=4)
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pem_of(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def perl_verify(messages: list[bytes], records: dict[str, rsa.RSAPrivateKey]) -> list[str]:
    """Mail::DKIM's verdict on each message ("pass d=example.com pass" …), the public
    keys of ``records`` (``selector._domainkey.domain`` → key) served by a DNS server
    of this test's own on loopback."""
    if (
        shutil.which("perl") is None
        or subprocess.run(
            ["perl", "-MMail::DKIM::Verifier", "-e", "1"], capture_output=True
        ).returncode
    ):
        pytest.skip("Perl's Mail::DKIM is not installed (scripts/setup installs it as root)")
    server = DnsServer()
    for name, key in records.items():
        server.txt(name, public_record(key))
    with server.running():
        done = subprocess.run(
            ["perl", "-e", VERIFY, str(server.port)],
            input=b"".join(m.replace(b"\0", b"") + b"\0" for m in messages),
            capture_output=True,
            timeout=120,
            check=True,
        )
    return done.stdout.decode().splitlines()
