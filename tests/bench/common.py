"""What the benchmarks share: running one measurement in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def measure_in_child(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m module ARGS`` (a measurement step) and read the JSON it prints last.

    A fresh process per measurement: its peak memory and its warm-up are its own.
    """
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-3000:])
        raise SystemExit(f"benchmark step {' '.join(args)} of {module} failed")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data
