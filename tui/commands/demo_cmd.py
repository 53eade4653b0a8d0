"""``msgrun demo``: the whole product on a sample organisation, nothing to configure."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import IO

from core.clock import SystemClock
from core.delivery.starting import create_run, request_stop
from core.interchange import import_document
from core.run_info import list_runs
from core.smtp_check import check_profile, load_profile, record_result
from core.smtp_profiles import ProfileSettings
from core.states import RUNNING
from core.storage import open_database
from tui.commands.foreground import foreground
from tui.errors import OperationFailed, UsageError

DEMO_RUN = "service-reminder"


def positive_rate(text: str) -> float:
    """argparse type: a number of messages per second above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 messages per second")
    return value


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    demo = commands.add_parser(
        "demo",
        help="the whole product on a sample organisation, nothing to configure",
        description="Builds the sample organisation into a fresh database, starts a local "
        "SMTP server that keeps what it receives, starts a run at a pace a person can "
        "watch, and opens the console.",
    )
    demo.add_argument(
        "--folder",
        default=str(Path.home() / ".cache" / "msgrun" / "demo"),
        help="where the demo keeps its database and received mail: a new or empty folder, "
        "or an earlier demo's, whose database and mail are replaced "
        "(default ~/.cache/msgrun/demo)",
    )
    demo.add_argument(
        "--rate",
        type=positive_rate,
        default=4.0,
        help="messages per second, so that a person can watch (default 4)",
    )
    demo.add_argument(
        "--no-console",
        action="store_true",
        help="set everything up and deliver the run, without opening the console",
    )
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    folder = Path(args.folder).expanduser()
    with prepare_folder(folder):  # the folder is this demo's while it runs
        return _demo_in(folder, args)


def _demo_in(folder: Path, args: argparse.Namespace) -> int:
    from fixtures.demo import demo_document
    from fixtures.smtp_servers import Faults, SmtpServer

    url = f"sqlite:///{folder / 'demo.db'}"
    database = open_database(url)
    clock = SystemClock()
    faults = Faults(
        rcpt={
            "ana.souza@example.org": ["451 4.3.0 greylisted, try again later"],
            # A line dropped before the data: tried again on another connection.
            "rosa.martins@example.org": ["disconnect"],
        },
    )
    server = SmtpServer(faults=faults, mail_folder=folder / "mail").start()
    try:
        document = demo_document(clock.now().date(), port=server.port)
        document["smtp_profiles"][0]["rate_per_second"] = args.rate
        # The greylisted address is tried again within seconds, to be seen doing so.
        document["smtp_profiles"][0]["retry_after_seconds"] = [3, 10]
        outcome = import_document(database, document)
        if not outcome.ok:
            raise OperationFailed(f"the demo data did not import: {outcome.problems[:3]}")
        profile: ProfileSettings = load_profile(database, "main")
        report = asyncio.run(check_profile(profile, {}))
        record_result(database, "main", report.ok, clock.now())
        run_id = create_run(database, DEMO_RUN, clock.now(), clock, started_by="demo")
        print(f"demo: database {url}", file=sys.stderr)
        print(
            f"demo: SMTP server on 127.0.0.1:{server.port}, mail kept in {folder / 'mail'}",
            file=sys.stderr,
        )
        print(f"demo: run {run_id} of {DEMO_RUN} started", file=sys.stderr)
        if args.no_console:
            return foreground(database, run_id, db_flag=url)
        from tui.console.app import MsgrunConsole
        from tui.console.launcher import TiedLauncher
        from tui.console.run_screen import RunScreen

        # The demo's runs die with it (and with its server): its terminal going
        # away, or the console closing, ends the processes delivering them.
        launcher = TiedLauncher()
        try:
            launcher(url, run_id)
            app = MsgrunConsole(
                database,
                db_url=url,
                mail_folder=folder / "mail",
                first_screen=lambda: RunScreen(run_id),
                launch=launcher,
            )

            def stop_what_runs() -> None:
                # The demo's server goes with it: stop what is still running.
                for run in list_runs(database):
                    if run.state == RUNNING:
                        request_stop(database, run.id, clock)

            def hang_up(*_: object) -> None:
                # The terminal is gone. Textual's own shutdown would write to it and
                # wait for ever (its output thread ends at the first failed write, and
                # the queue behind it fills up): end what the demo started, and leave.
                with contextlib.suppress(Exception):
                    stop_what_runs()
                with contextlib.suppress(Exception):
                    launcher.end()
                os._exit(0)

            signal.signal(signal.SIGHUP, hang_up)
            app.run()
            stop_what_runs()
        finally:
            launcher.end()
        with contextlib.suppress(OSError):  # the terminal may be gone
            print(
                f"demo: the database stays in {folder}; MSGRUN_DB={url} msgrun opens it again",
                file=sys.stderr,
            )
        return 0
    finally:
        server.stop()


MARKER = ".msgrun-demo"
# Held (flock) by the demo using the folder, for as long as it runs.
LOCK = ".msgrun-demo.lock"
# What a demo makes in its folder, and so what a later demo may replace.
DEMO_FILES = ("demo.db", "demo.db-wal", "demo.db-shm", "demo.db.migrate-lock")


def prepare_folder(folder: Path) -> IO[str]:
    """A new or empty folder, or an earlier demo's (marked so) with its data removed;
    returns the folder's lock, held until it is closed.

    Never deletes what a demo did not make: a folder with anything else in it
    and no demo's mark is refused, untouched; nor what a demo still running
    uses: a folder whose lock another demo holds is refused, untouched.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--folder {folder}: is a file, not a folder; nothing was touched")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise UsageError(
            f"--folder {folder}: not empty and not an earlier demo's folder; nothing was "
            "touched (give a new or empty folder)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (held by the caller)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise UsageError(
                f"--folder {folder}: a msgrun demo is running there ({holder}); nothing was "
                "touched (give another --folder, or quit that demo first)"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        for name in DEMO_FILES:
            (folder / name).unlink(missing_ok=True)
        if (folder / "mail").is_dir():
            shutil.rmtree(folder / "mail")
        (folder / "mail").mkdir()
        (folder / MARKER).write_text(
            "A msgrun demo's folder: msgrun demo replaces its database and mail.\n"
        )
    except OSError as error:
        raise OperationFailed(f"--folder {folder}: {error.strerror or error}") from None
    return lock
