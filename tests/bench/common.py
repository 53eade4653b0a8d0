"""What the benchmarks share: running one measurement in a fresh interpreter."""

from __future__ import annotations

import json
import resource
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


def peak_rss_mib() -> float:
    """This process's peak resident memory.

    From /proc (VmHWM) where there is one: getrusage's ru_maxrss survives
    fork and exec on Linux, so a child would report its parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
