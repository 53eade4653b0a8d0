"""The one-click unsubscribe endpoint (inbox.md, Receiving requests; RFC 8058), an
aiohttp application answering the path of the organisation's ``unsubscribe.url``:

- ``POST …/TOKEN`` with ``List-Unsubscribe=One-Click`` in the body (urlencoded or
  multipart/form-data): records the unsubscribe, 200;
- ``GET …/TOKEN``: a small page naming the organisation and the kind of message that
  will stop, with one button that posts; a GET never unsubscribes (mail scanners fetch
  links);
- an unknown or forged token 404, a body over 4 KiB 413, a malformed request 400, the
  database unavailable 503 — nothing recorded, no customer data in any answer.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from datetime import datetime

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from core.storage.database import Database, DatabaseUnavailable
from core.unsubscribe.records import Target, record, target_of

MAX_BODY = 4096
KIND_SAID = {
    "broadcast": "news and offers",
    "service_reminder": "service reminders",
    "invoice_reminder": "payment reminders",
    "status_update": "status updates",
    "confirmation": "booking confirmations",
}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Unsubscribe</title></head>
<body><h1>{title}</h1><p>{text}</p>{form}</body></html>
"""


def page(title: str, text: str, form: str = "", status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), text=html.escape(text), form=form),
        content_type="text/html",
        status=status,
        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"},
    )


NOT_FOUND = ("Unknown link", "This unsubscribe link is not valid.")
UNAVAILABLE = ("Try again later", "The unsubscribe service is unavailable just now.")


def application(database: Database, path: str, now: Callable[[], datetime]) -> web.Application:
    """The endpoint at ``path`` (the URL's path, ending in /)."""

    def find(token: str) -> Target | None:
        with database.connect() as connection:
            return target_of(connection, token)

    def store(token: str) -> bool:
        with database.connect() as connection:
            target = target_of(connection, token)
            return target is not None and record(connection, target, "one_click", now())

    async def guarded(work: Callable[[], object]) -> object:
        try:
            return await asyncio.to_thread(work)
        except (SQLAlchemyError, DatabaseUnavailable, OSError):
            raise web.HTTPServiceUnavailable(
                text=PAGE.format(title=UNAVAILABLE[0], text=UNAVAILABLE[1], form=""),
                content_type="text/html",
            ) from None

    async def show(request: web.Request) -> web.Response:
        target = await guarded(lambda: find(request.match_info["token"]))
        if not isinstance(target, Target) or target.kind not in KIND_SAID:
            return page(*NOT_FOUND, status=404)
        form = (
            '<form method="post"><input type="hidden" name="List-Unsubscribe" '
            'value="One-Click"><button type="submit">Unsubscribe</button></form>'
        )
        return page(
            "Unsubscribe",
            f"Stop receiving {KIND_SAID[target.kind]} from {target.organisation} by email. "
            "Invoices and receipts still come.",
            form,
        )

    async def unsubscribe(request: web.Request) -> web.Response:
        if request.content_type not in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            return page("Bad request", "Expected a form.", status=415)
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return page("Too large", "The request is too large.", status=413)
        except (ValueError, AssertionError):
            return page("Bad request", "The request could not be read.", status=400)
        if form.get("List-Unsubscribe") != "One-Click":
            return page("Bad request", "Expected List-Unsubscribe=One-Click.", status=400)
        done = await guarded(lambda: store(request.match_info["token"]))
        if done is not True:
            return page(*NOT_FOUND, status=404)
        return page("Unsubscribed", "You are unsubscribed. Invoices and receipts still come.")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get(path + "{token:[0-9A-Za-z]{1,64}}", show)
    app.router.add_post(path + "{token:[0-9A-Za-z]{1,64}}", unsubscribe)
    return app
