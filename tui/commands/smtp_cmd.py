"""``msgrun smtp test PROFILE [--to ADDR] [--json]``: diagnose a sending profile;
``msgrun smtp password PROFILE``: store its password in the OS keyring."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from core import settings
from core.addresses import address_problem
from core.attachments.reckon import limit_source, size_limit
from core.clock import SystemClock
from core.passwords import SERVICE, KeyringUnavailable, store_password
from core.planner.report import dumps
from core.smtp_check import (
    CheckReport,
    Step,
    UnknownProfile,
    check_profile,
    load_profile,
    record_result,
)
from tui import event_loop
from tui.commands.common import database
from tui.errors import OperationFailed, UsageError
from tui.output import write_out


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    smtp = commands.add_parser("smtp", help="check SMTP profiles")
    actions = smtp.add_subparsers(dest="smtp_command", metavar="ACTION", required=True)
    test = actions.add_parser(
        "test",
        parents=[common],
        help="check a profile step by step",
        description="Resolve, connect, TLS, banner, EHLO, STARTTLS, AUTH and, with --to, a "
        "real test message: each step with its time, the server's words and, when it fails, "
        "what to do.",
    )
    test.add_argument("profile")
    test.add_argument("--to", metavar="ADDR", help="also send a test message to this address")
    test.add_argument("--json", action="store_true", help="print one JSON object")
    test.add_argument(
        "--transcript",
        action="store_true",
        help="also print the SMTP conversation (passwords are never shown)",
    )
    test.set_defaults(handler=run_test)
    password = actions.add_parser(
        "password",
        parents=[common],
        help="store a profile's password in the OS keyring",
        description="Store the password of a profile's account in the OS keyring (service "
        "msgrun, account: the profile's password_env). msgrun reads it there when "
        f"{settings.KEYRING}=1 is set and the environment variable is not. Asked for without echo "
        "on a terminal; otherwise the first line of standard input.",
    )
    password.add_argument("profile")
    password.set_defaults(handler=run_password)


def show_step(step: Step) -> None:
    mark = "ok " if step.ok else "FAIL"
    print(f"  {mark} {step.step:<9} {step.ms:8.1f} ms  {step.detail}", flush=True)
    if step.hint:
        print(f"       {'':<9} {'':>8}     → {step.hint}", flush=True)
    if step.warning:
        print(f"       {'':<9} {'':>8}     ! {step.warning}", flush=True)


def size_limit_text(max_message_bytes: int | None, server_size: int | None) -> str:
    """``size limit 10,240,000 bytes (the SIZE the server announced)``, or that there is none."""
    limit = size_limit(max_message_bytes, server_size)
    if limit is None:
        return "no size limit (the server announces no SIZE and max_message_bytes is not set)"
    return f"size limit {limit:,} bytes ({limit_source(max_message_bytes, server_size)})"


def run_test(args: argparse.Namespace) -> int:
    if args.to is not None and (problem := address_problem(args.to)) is not None:
        raise UsageError(f"--to: {args.to!r} is not a valid email address: {problem}")
    db = database(args.db)
    try:
        profile = load_profile(db, args.profile)
    except UnknownProfile as error:
        raise UsageError(str(error)) from None
    if not args.json:
        print(
            f"SMTP profile {profile.id}: {profile.host}:{profile.port}, security "
            f"{profile.security}"
            + (f", user {profile.username}" if profile.username else "")
            + ("" if profile.tls_verify else ", CERTIFICATES NOT VERIFIED (tls_verify false)"),
            flush=True,
        )
    report: CheckReport = event_loop.run(
        check_profile(profile, os.environ, to=args.to, on_step=None if args.json else show_step)
    )
    record_result(db, profile.id, report.ok, SystemClock().now(), report)
    if args.json:
        write_out(dumps(report.as_json()))
    else:
        verdict = "every step passed" if report.ok else f"failed at {report.failed_step}"
        print(f"{profile.id}: {verdict}")
        if report.ehlo_seen:
            print(f"{profile.id}: {size_limit_text(profile.max_message_bytes, report.server_size)}")
        print(f"{profile.id}: {report.sender_auth_verdict}")
        if args.transcript:
            print("\nTranscript:")
            for line in report.transcript:
                print(f"  {line}")
    if args.transcript and args.json:
        print("\n".join(report.transcript), file=sys.stderr)
    return 0 if report.ok else 1


def run_password(args: argparse.Namespace) -> int:
    db = database(args.db)
    try:
        profile = load_profile(db, args.profile)
    except UnknownProfile as error:
        raise UsageError(str(error)) from None
    if profile.username is None or profile.password_env is None:
        raise UsageError(
            f"SMTP profile {profile.id} has no username: it sends without AUTH and needs no "
            "password"
        )
    if sys.stdin.isatty():
        secret = getpass.getpass(f"password of {profile.username} ({profile.id}): ")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise UsageError("no password given: nothing was stored")
    try:
        keyring_name = store_password(profile.password_env, secret)
    except KeyringUnavailable as error:
        raise OperationFailed(
            f"no OS keyring can store it here ({error}); set {profile.password_env} in "
            "msgrun's environment instead"
        ) from None
    print(
        f"the password of SMTP profile {profile.id} is in the OS keyring ({keyring_name}) as "
        f"{SERVICE}/{profile.password_env}; msgrun reads it there when {settings.KEYRING}=1 and "
        f"{profile.password_env} is not set"
    )
    return 0
