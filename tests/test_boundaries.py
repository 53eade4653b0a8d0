"""core/ is the engine: it must never import a user interface."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import core

ROOT = Path(__file__).resolve().parent.parent
UI_MODULES = ("textual", "rich", "tui")


def core_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(core.__path__, prefix="core.")
        if ".migrations" not in info.name
    )


def test_there_are_core_modules_to_check() -> None:
    modules = core_modules()
    assert "core.planner.plan" in modules
    assert "core.interchange.parse" in modules
    assert "core.storage.models" in modules


def test_core_imports_no_ui_module() -> None:
    """Import every core module in a fresh interpreter; no UI module may get loaded."""
    script = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {UI_MODULES!r})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"core pulled in UI modules: {result.stdout.strip()}"


def test_core_source_names_no_ui_import() -> None:
    offenders = []
    for path in (ROOT / "core").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(
                stripped.split()[1].split(".")[0] == ui for ui in UI_MODULES
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert offenders == []


def test_the_console_imports_nothing_from_the_test_fixtures() -> None:
    """What the console shows comes from core; `fixtures/` is for tests and the demo's
    own command, never for a screen (imports inside functions too)."""
    offenders = []
    for path in (ROOT / "tui" / "console").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and (
                stripped.split()[1].split(".")[0] == "fixtures"
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert offenders == []
