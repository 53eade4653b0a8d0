"""msgrun as the user ``nobody`` runs it, from wherever the checkout is.

Postfix's pipe(8) never runs a command as root, and a test of a folder msgrun
may not write runs it as ``nobody`` too. A checkout in a folder other users
cannot enter (a home of mode 700, ``mktemp -d``) holds the environment's
``msgrun``, its packages and msgrun's own source (an editable install) where
``nobody`` cannot reach them. So, unless the environment's ``msgrun`` already
runs as ``nobody``, this installs one where it can: a world-traversable folder
in the system's temporary folder holding msgrun's source and the environment's
packages (hard links where the file system allows, else copies), started by
an interpreter of the same Python version that ``nobody`` may run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
MSGRUN = Path(sys.executable).with_name("msgrun")
NOBODY = 65534
SOURCE_PACKAGES = ("core", "tui", "fixtures")


def runs_as_nobody(*command: str) -> bool:
    try:
        probe = subprocess.run(
            list(command),
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            capture_output=True,
            timeout=60,
            check=False,
            cwd="/",
            env={**os.environ, "HOME": "/nonexistent"},
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _link_or_copy(source: str, target: str) -> None:
    """A hard link to a file others may read (never a change to the checkout's own
    files: a link shares their mode); a readable copy of any other, or where the
    file system has no links."""
    mode = os.stat(source).st_mode
    if mode & 0o004:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)
    os.chmod(target, (mode & 0o777) | 0o444)


def _interpreter() -> Path | None:
    """A Python of this version that nobody may run: this one's own, or the system's."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    for candidate in (base, Path("/usr/bin") / version, Path("/usr/local/bin") / version):
        if candidate.exists() and runs_as_nobody(str(candidate), "-I", "-c", "pass"):
            return candidate
    return None


def install_for_nobody(folder: Path) -> Path:
    """A ``msgrun`` command in ``folder`` (which this makes world-traversable) that
    nobody can run: msgrun's source and this environment's packages beside it."""
    python = _interpreter()
    if python is None:
        pytest.fail(
            f"no python{sys.version_info.major}.{sys.version_info.minor} that the user nobody "
            "may run (pipe(8) never runs a command as root)"
        )
    folder.chmod(0o755)
    source = folder / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in SOURCE_PACKAGES:
        shutil.copytree(
            CHECKOUT / package, source / package, ignore=ignore, copy_function=_link_or_copy
        )
    packages = folder / "site-packages"
    shutil.copytree(
        sysconfig.get_paths()["purelib"],
        packages,
        ignore=shutil.ignore_patterns("__pycache__", "__editable__*", "_virtualenv*"),
        copy_function=_link_or_copy,
        symlinks=True,
    )
    for path in (folder, *folder.rglob("*")):  # the folders are new: open them
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o755)
    command = folder / "msgrun"
    command.write_text(
        f"#!{python} -IS\n"
        "import site\nimport sys\n"
        f"sys.path.insert(0, {str(source)!r})\n"
        f"site.addsitedir({str(packages)!r})\n"
        "from tui.cli import main\n"
        "sys.exit(main())\n"
    )
    command.chmod(0o755)
    if not runs_as_nobody(str(command), "--help"):
        pytest.fail(f"neither {MSGRUN} nor {command} can be run by the user nobody")
    return command


@contextmanager
def msgrun_nobody_can_run() -> Iterator[Path]:
    """The ``msgrun`` command the user nobody runs (see the module's docstring), for as
    long as the block lasts."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run msgrun as the user nobody")
    if runs_as_nobody(str(MSGRUN), "--help"):
        yield MSGRUN
        return
    folder = Path(tempfile.mkdtemp(prefix="msgrun-for-nobody-", dir="/tmp"))
    try:
        yield install_for_nobody(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
