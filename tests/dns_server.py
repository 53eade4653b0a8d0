"""A DNS server of the test's own on loopback (UDP, dnspython): answers TXT queries from
a dict it is given, NXDOMAIN for any other name, and SERVFAIL for the names listed in
``servfail``. Started and stopped by the test (a context manager)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


@dataclass
class DnsServer:
    """TXT records by name (each a list of records, each a list of strings)."""

    records: dict[str, list[list[str]]] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    queries: list[str] = field(default_factory=list)
    port: int = 0

    def txt(self, name: str, *values: str | list[str]) -> None:
        """Publish TXT records at ``name``: a record given as one text goes as strings of
        at most 255 characters (as DNS requires), a list as the strings given."""
        self.records[name.lower().rstrip(".")] = [
            [v[i : i + 255] for i in range(0, len(v), 255)] or [""]
            if isinstance(v, str)
            else list(v)
            for v in values
        ]

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower().rstrip(".")
        self.queries.append(name)
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            texts = [
                " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in record)
                for record in self.records[name]
            ]
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, "TXT", texts)
            )
        return bytes(response.to_wire())

    @contextmanager
    def running(self) -> Iterator[DnsServer]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    wire, peer = sock.recvfrom(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    sock.sendto(self.answer(wire), peer)
                except Exception:  # a query it cannot read: no answer, as a server would
                    continue

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=5)
            sock.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"
