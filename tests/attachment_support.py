"""Documents folders for the attachment tests: a folder with a customer's PDF in it."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

from tests.conftest import MINIMAL


def pdf_bytes(label: str, padding: int = 0) -> bytes:
    """A minimal valid one-page PDF naming ``label`` (``padding`` bytes of comment added)."""
    text = f"BT /F1 18 Tf 72 720 Td ({label}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(text)).encode() + b" >>\nstream\n" + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n".encode()
    out += b"%%EOF\n"
    if padding:
        out += b"%" + bytes((i * 7 + 33) % 90 + 33 for i in range(padding - 2)) + b"\n"
    return bytes(out)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_files(folder: Path, files: dict[str, Any] | None = None) -> dict[str, Any]:
    """MINIMAL with a documents folder and D1's invoice PDF listed (written to the folder)."""
    document = copy.deepcopy(MINIMAL)
    document["organisation"]["documents_folder"] = str(folder)
    (folder / "2026").mkdir(parents=True, exist_ok=True)
    (folder / "2026" / "2026-0001.pdf").write_bytes(pdf_bytes("2026-0001"))
    document["documents"][0]["files"] = [files or {"path": "2026/2026-0001.pdf"}]
    return document
