"""``msgrun unsubscribe serve --listen HOST:PORT``: the one-click unsubscribe endpoint
(``core.unsubscribe.endpoint``), behind the operator's HTTPS reverse proxy, until SIGTERM
or SIGINT (exit 0)."""

from __future__ import annotations

import argparse
import socket
from urllib.parse import urlsplit

from sqlalchemy import select

from core.clock import SystemClock
from core.storage.models import Organisation, table_of
from tui.commands.common import database
from tui.errors import UsageError


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    unsubscribe = commands.add_parser("unsubscribe", help="receive unsubscribe requests")
    actions = unsubscribe.add_subparsers(
        dest="unsubscribe_command", metavar="ACTION", required=True
    )
    serve = actions.add_parser(
        "serve",
        parents=[common],
        help="answer one-click unsubscribe requests over HTTP",
        description="An HTTP server answering the path of the organisation's unsubscribe.url "
        "(RFC 8058 one-click POST; a GET shows a page with a button and never unsubscribes), "
        "to run behind an HTTPS reverse proxy. Ends on SIGTERM or SIGINT.",
    )
    serve.add_argument("--listen", required=True, metavar="HOST:PORT")
    serve.set_defaults(handler=run_serve)


def listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen: {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def run_serve(args: argparse.Namespace) -> int:
    # aiohttp is imported here, not when any msgrun command starts (a third of a second).
    from aiohttp import web

    from core.unsubscribe.endpoint import application

    host, port = listen_address(args.listen)
    db = database(args.db)
    with db.connect() as connection:
        settings = connection.execute(select(table_of(Organisation).c.unsubscribe)).scalar()
    url = (settings or {}).get("url")
    if not url:
        raise UsageError(
            "the organisation configures no unsubscribe.url: nothing links to this server "
            "(set organisation.unsubscribe.url in the interchange file)"
        )
    path = urlsplit(url).path or "/"
    if not path.endswith("/"):
        path += "/"
    try:
        sock = socket.create_server((host, port))
    except OSError as error:
        raise UsageError(
            f"--listen: cannot listen on {host}:{port}: {error.strerror or error}"
        ) from None
    clock = SystemClock()
    app = application(db, path, clock.now)
    print(f"unsubscribe: listening on http://{host}:{port}{path} (for {url})", flush=True)
    web.run_app(app, sock=sock, print=None, handle_signals=True, access_log=None)
    print("unsubscribe: stopped", flush=True)
    return 0
