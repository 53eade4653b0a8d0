"""``msgrun demo``: the whole product on a sample organisation, nothing to configure."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path

from core.clock import SystemClock
from core.delivery.runs import create_run, list_runs, request_stop
from core.delivery.smtp import ProfileSettings
from core.interchange import import_document
from core.smtp_check import check_profile, load_profile, record_result
from core.storage import open_database
from tui.errors import OperationFailed

DEMO_RUN = "service-reminder"


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
        help="where the demo keeps its database and received mail "
        "(emptied first; default ~/.cache/msgrun/demo)",
    )
    demo.add_argument(
        "--rate",
        type=float,
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
    from fixtures.demo import demo_document
    from fixtures.smtp_servers import Faults, SmtpServer

    folder = Path(args.folder).expanduser()
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "mail").mkdir(parents=True)
    url = f"sqlite:///{folder / 'demo.db'}"
    database = open_database(url)
    clock = SystemClock()
    faults = Faults(
        rcpt={"ana.souza@example.org": ["451 4.3.0 greylisted, try again later"]},
        data={"rosa.martins@example.org": ["disconnect"]},
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
            from tui.commands.runs import foreground

            return foreground(database, run_id)
        from tui.console.app import MsgrunConsole
        from tui.console.launcher import deliver_in_background
        from tui.console.run_screen import RunScreen

        deliver_in_background(url, run_id)
        app = MsgrunConsole(
            database,
            db_url=url,
            mail_folder=folder / "mail",
            first_screen=lambda: RunScreen(run_id),
        )
        app.run()
        # The demo's server goes with it: stop what is still running.
        for run in list_runs(database):
            if run.state == "running":
                request_stop(database, run.id, clock)
        print(
            f"demo: the database stays in {folder}; MSGRUN_DB={url} msgrun   opens it again",
            file=sys.stderr,
        )
        return 0
    finally:
        server.stop()
