"""Delivery benchmark (issue 19). One command:

    scripts/bench delivery                  # 20,000 messages per msgrun case, 3 rounds
    scripts/bench delivery --messages 5000 --rounds 1

Against Postfix's smtp-sink on loopback, side by side in one run:
- the ceiling: smtp-source -d (connections reused) with 1, 4 and 16 sessions;
- the bare Python pipeline: aiosmtplib on uvloop sending pre-built message
  bytes over 4 connections, with no bookkeeping at all, in one process and in
  two (what Python itself can put on the wire here);
- a plain smtplib loop building each message with EmailMessage (what a user
  writes by hand);
- the `msgrun run start` command as a user runs it (timed from its run-id line
  to its exit) at 4 connections, as it chooses (sender processes for a run this
  large) and with MSGRUN_SENDER_PROCESSES=0 (one process);
- msgrun delivering in-process (SQLite, uvloop) at 1, 4 and 16 connections, with
  the share of wall time each part of the delivering process takes (at 4
  connections once a round: the median share);
- attachments (attachments.md): the command sending a run whose messages each
  carry their document's 100 KiB PDF (read and encoded per message, from a pool
  of 100 files), against the bare pipeline sending pre-built messages of the
  same size; ``--only attachments`` measures just that pair.
The bare pipeline and the command are measured in turn, ``--rounds`` times,
each ratio taken within its round (this machine's speed varies from minute
to minute); the median is printed. Installs Postfix (Debian package) when
smtp-sink is missing and it may (root with apt-get).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"


def ensure_postfix_tools() -> None:
    if Path(SINK).exists() and Path(SOURCE).exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit("smtp-sink is missing: install the Debian package postfix")
    print("installing postfix (for smtp-sink and smtp-source)...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "postfix"], env=env, check=True, capture_output=True
    )


def start_sink(port: int) -> subprocess.Popen[bytes]:
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen(
        [SINK, *user, f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=1) as probe:
                probe.noop()
            return sink
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise SystemExit("smtp-sink did not start")


def source_rate(port: int, sessions: int, messages: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            SOURCE,
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-d",
            "-f",
            "billing@pools.example.com",
            "-t",
            "ana@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
    )
    return messages / (time.perf_counter() - started)


def plain_loop_rate(port: int, messages: int) -> float:
    """What a user writes by hand: one connection, EmailMessage for every message."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(messages):
            message = EmailMessage()
            message["From"] = "Blue Lagoon Pools <billing@pools.example.com>"
            message["To"] = f"Customer {i} <p{i}@example.org>"
            message["Subject"] = f"Invoice 2026-{i:05d} from Blue Lagoon Pools"
            message.set_content(f"Dear Customer {i},\n\nPlease find your invoice.\n")
            smtp.send_message(message)
    return messages / (time.perf_counter() - started)


BARE_BODY = (
    b"From: Blue Lagoon Pools <billing@pools.example.com>\r\n"
    b"To: <ana@example.org>\r\nSubject: Invoice\r\nMessage-ID: <x@pools.example.com>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Dear customer,\r\n\r\nPlease find your invoice.\r\n"
)
PDF_BYTES = 100 * 1024
PDF_POOL = 100


def pdf_of_size(label: str, size: int) -> bytes:
    from tests.attachment_support import pdf_bytes

    bare = pdf_bytes(label)
    return pdf_bytes(label, size - len(bare))


def attached_size() -> int:
    """The size of a message carrying one 100 KiB PDF, as msgrun builds it."""
    from core.attachments.mime import encode, with_attachments
    from core.attachments.specs import FileSpec

    part = encode(FileSpec.of_path("2026-00000.pdf"), pdf_of_size("x", PDF_BYTES))
    return len(with_attachments(BARE_BODY, [part]))


def padded_body(size: int) -> bytes:
    """The bare message grown to ``size`` bytes with lines of 76 characters."""
    if size <= len(BARE_BODY):
        return BARE_BODY
    line = b"A" * 76 + b"\r\n"
    missing = size - len(BARE_BODY)
    return BARE_BODY + line * (missing // len(line)) + b"B" * (missing % len(line))


async def _bare_process(port: int, connections: int, messages: int, size: int = 0) -> None:
    """``messages`` pre-built messages (of ``size`` bytes, when given) over ``connections``
    aiosmtplib connections."""
    import asyncio

    import aiosmtplib

    body = padded_body(size)
    share = [
        messages // connections + (1 if i < messages % connections else 0)
        for i in range(connections)
    ]

    async def one(count: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        for _ in range(count):
            await smtp.sendmail("billing@pools.example.com", ["ana@example.org"], body)
        await smtp.quit()

    await asyncio.gather(*(one(n) for n in share if n))


def bare_rate(port: int, connections: int, messages: int, processes: int, size: int = 0) -> float:
    """The bare pipeline in ``processes`` processes sharing ``connections`` between them
    (messages of ``size`` bytes when given)."""
    per = [messages // processes + (1 if i < messages % processes else 0) for i in range(processes)]
    conns = [
        connections // processes + (1 if i < connections % processes else 0)
        for i in range(processes)
    ]
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.bench_delivery",
                "--bare",
                *map(str, (port, c, n, size)),
            ],
            cwd=ROOT,
        )
        for c, n in zip(conns, per, strict=True)
    ]
    for child in children:
        if child.wait() != 0:
            raise SystemExit("a bare pipeline process failed")
    return messages / (time.perf_counter() - started)


def with_pdfs(doc: dict[str, object], folder: Path) -> dict[str, object]:
    """Each document lists its 100 KiB PDF (one of a pool of 100, so the files stay few)."""
    (folder / "pdf").mkdir()
    for i in range(PDF_POOL):
        (folder / "pdf" / f"{i}.pdf").write_bytes(pdf_of_size(f"invoice {i}", PDF_BYTES))
    doc["organisation"]["documents_folder"] = str(folder)  # type: ignore[index]
    for i, item in enumerate(doc["documents"]):  # type: ignore[attr-defined]
        item["files"] = [{"path": f"pdf/{i % PDF_POOL}.pdf", "name": f"{item['number']}.pdf"}]
    return doc


def dkim_pem() -> str:
    """A fresh RSA-2048 key (PEM) for the signed runs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def command_rate(
    port: int,
    connections: int,
    messages: int,
    processes: str | None,
    pdfs: bool = False,
    pem: str | None = None,
) -> float:
    """``msgrun run start`` as a user runs it: from its run-id line to its exit
    (``processes``: MSGRUN_SENDER_PROCESSES, None: msgrun decides; ``pdfs``: each
    message carries its document's 100 KiB PDF; ``pem``: the profile signs every
    message with this DKIM key, given in an environment variable)."""
    from core.storage import open_database
    from tests.conftest import load_ok
    from tests.delivery_support import document

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        database = open_database(url)
        doc = document(messages, port, max_connections=connections)
        if pem is not None:
            doc["smtp_profiles"][0]["dkim"] = {
                "domain": "testpools.example.com",
                "selector": "msgrun",
                "private_key_env": "MSGRUN_BENCH_DKIM",
            }
        load_ok(database, with_pdfs(doc, Path(folder)) if pdfs else doc)
        database.dispose()
        msgrun = str(Path(sys.executable).with_name("msgrun"))
        env = {k: v for k, v in os.environ.items() if k != "MSGRUN_SENDER_PROCESSES"}
        if processes is not None:
            env["MSGRUN_SENDER_PROCESSES"] = processes
        if pem is not None:
            env["MSGRUN_BENCH_DKIM"] = pem
        process = subprocess.Popen(
            [msgrun, "--db", url, "run", "start", "inv"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        process.stdout.readline()  # the run id: delivery begins
        started = time.perf_counter()
        code = process.wait()
        seconds = time.perf_counter() - started
        if code != 0:
            raise SystemExit(f"msgrun run start exited {code}")
    return messages / seconds


def msgrun_case(port: int, connections: int, messages: int) -> dict[str, float]:
    """Deliver a run in a fresh process; return its figures."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.bench_delivery",
            "--case",
            str(port),
            str(connections),
            str(messages),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit("a msgrun case failed")
    figures: dict[str, float] = dict(
        (k, float(v)) for k, v in (item.split("=") for item in result.stdout.split())
    )
    return figures


PARTS = ("reading", "marking", "recording")


def run_case(port: int, connections: int, messages: int) -> None:
    import uvloop

    from core.clock import SystemClock
    from core.delivery.deliver import deliver
    from core.storage import open_database
    from tests.delivery_support import document, new_run

    with tempfile.TemporaryDirectory() as folder:
        database = open_database(f"sqlite:///{folder}/bench.db")
        run_id = new_run(database, document(messages, port, max_connections=connections))
        started = time.perf_counter()
        cpu_before = time.process_time()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        delivery = uvloop.run(deliver(database, run_id, SystemClock(), environ={}))
        seconds = time.perf_counter() - started
        assert delivery.state == "completed" and delivery.sent == messages, delivery
        cpu = time.process_time() - cpu_before
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = (children.ru_utime + children.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
    timings = delivery.timings
    print(
        f"rate={messages / seconds} seconds={seconds} cpu={cpu} child_cpu={child_cpu} "
        f"processes={delivery.sender_processes} "
        + " ".join(f"{k}={timings.get(k, 0.0)}" for k in PARTS)
    )


def signing_round(port: int, messages: int, pem: str) -> dict[str, float]:
    """The command at 4 connections unsigned, then with every message DKIM-signed."""
    return {
        "unsigned": command_rate(port, 4, messages, None),
        "signed": command_rate(port, 4, messages, None, pem=pem),
    }


def print_signing(rounds: list[dict[str, float]], messages: int) -> None:
    unsigned = statistics.median(r["unsigned"] for r in rounds)
    signed = statistics.median(r["signed"] for r in rounds)
    ratio = statistics.median(r["signed"] / r["unsigned"] for r in rounds)
    print()
    print(
        f"  DKIM signing (rsa-sha256, 2048 bits), msgrun run start at 4 connections, "
        f"{messages:,} messages, median of {len(rounds)} rounds:"
    )
    print(f"    unsigned {unsigned:8,.0f} msg/s   signed {signed:8,.0f} msg/s   = {ratio:.0%}")
    print(
        "    per round (signed / unsigned): "
        + ", ".join(
            f"{r['signed']:,.0f} / {r['unsigned']:,.0f} = {r['signed'] / r['unsigned']:.0%}"
            for r in rounds
        )
    )
    print("    goal: a signed run reaches >= 50 % of the unsigned rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--case", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs="+", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        choices=["attachments"],
        help="attachments: only a run of messages carrying a 100 KiB PDF each, against "
        "the bare pipeline sending messages of the same size",
    )
    parser.add_argument(
        "--signing",
        action="store_true",
        help="only the command unsigned and DKIM-signed, side by side (a quick check)",
    )
    args = parser.parse_args()
    if args.case:
        run_case(*args.case)
        return
    if args.bare:
        import uvloop

        uvloop.run(_bare_process(*args.bare))
        return

    from fixtures.smtp_servers import free_port

    ensure_postfix_tools()
    port = free_port()
    sink = start_sink(port)
    pem = dkim_pem()
    if args.only == "attachments":
        try:
            attachment_rounds = [attachment_round(port, args.messages) for _ in range(args.rounds)]
        finally:
            sink.terminate()
            sink.wait()
        print_attachments(attachment_rounds, args.messages)
        return
    if args.signing:
        try:
            signing = [signing_round(port, args.messages, pem) for _ in range(args.rounds)]
        finally:
            sink.terminate()
            sink.wait()
        print_signing(signing, args.messages)
        return
    baseline = max(args.messages, 20_000)
    rounds: list[dict[str, float]] = []
    profiles: list[dict[str, float]] = []  # in-process at 4 connections, one a round
    attachment_rounds: list[dict[str, float]] = []
    signing: list[dict[str, float]] = []  # the command unsigned and signed, one a round
    try:
        ceiling = {s: source_rate(port, s, baseline) for s in (1, 4, 16)}
        plain = plain_loop_rate(port, min(args.messages, 5000))
        for _ in range(args.rounds):
            rounds.append(
                {
                    "bare_two": bare_rate(port, 4, baseline, 2),
                    "command": command_rate(port, 4, args.messages, None),
                    "bare_one": bare_rate(port, 4, baseline, 1),
                    "command_one": command_rate(port, 4, args.messages, "0"),
                }
            )
            profiles.append(msgrun_case(port, 4, args.messages))
            attachment_rounds.append(attachment_round(port, args.messages))
            signing.append(signing_round(port, args.messages, pem))
        ours = {c: msgrun_case(port, c, args.messages) for c in (1, 16)}
    finally:
        sink.terminate()
        sink.wait()

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def share(top: str, bottom: str) -> float:
        return statistics.median(r[top] / r[bottom] for r in rounds)

    print()
    print(
        f"Delivery to Postfix smtp-sink on loopback, {args.messages:,} messages per msgrun case "
        f"({os.cpu_count()} cores; medians of {args.rounds} rounds, each ratio within its round)"
    )
    print(f"  plain smtplib loop (EmailMessage per message)   {plain:8,.0f} msg/s  (baseline)")
    print(f"  bare Python pipeline, 4 connections, 1 process  {median('bare_one'):8,.0f} msg/s")
    print(f"  bare Python pipeline, 4 connections, 2 procs    {median('bare_two'):8,.0f} msg/s")
    print(
        f"  msgrun run start (the command), 4 connections   {median('command'):8,.0f} msg/s  "
        f"= {share('command', 'bare_two'):.0%} of the bare pipeline (2 processes), "
        f"{share('command', 'bare_one'):.0%} of 1 process, "
        f"{median('command') / ceiling[4]:.0%} of smtp-source"
    )
    print(
        f"  msgrun run start, MSGRUN_SENDER_PROCESSES=0     {median('command_one'):8,.0f} msg/s  "
        f"= {share('command_one', 'bare_two'):.0%} of the bare pipeline (2 processes), "
        f"{share('command_one', 'bare_one'):.0%} of 1 process"
    )
    print(
        "  per round (command / bare 2 processes): "
        + ", ".join(
            f"{r['command']:,.0f} / {r['bare_two']:,.0f} = {r['command'] / r['bare_two']:.0%}"
            for r in rounds
        )
    )
    print()
    print(
        "  connections   smtp-source -d   msgrun in-process   sender processes   "
        "msgrun/source   msgrun/plain   recording"
    )

    def profile_share(part: str) -> float:
        return statistics.median(f[part] / f["seconds"] for f in profiles)

    # The row for 4 connections is the round whose rate is the median's.
    ours[4] = sorted(profiles, key=lambda f: f["rate"])[len(profiles) // 2]
    for c in (1, 4, 16):
        figures = ours[c]
        print(
            f"  {c:>11}   {ceiling[c]:14,.0f}   {figures['rate']:17,.0f}   "
            f"{figures['processes']:16.0f}   {figures['rate'] / ceiling[c]:13.0%}   "
            f"{figures['rate'] / plain:11.1f}x   {figures['recording'] / figures['seconds']:8.1%}"
        )
    print()
    four = ours[4]
    print(
        "  where the delivering process's time goes at 4 connections (share of wall time, "
        f"median of {len(profiles)} rounds; its database calls run on one thread beside "
        "the event loop):"
    )
    for part in PARTS:
        each = ", ".join(f"{f[part] / f['seconds']:.1%}" for f in profiles)
        print(f"    {part:<28} {profile_share(part):6.1%}   (rounds: {each})")
    print(
        f"    (delivering process CPU {four['cpu']:.1f} s, sender processes "
        f"{four['child_cpu']:.1f} s, for {four['seconds']:.1f} s of wall time; "
        "the sender processes build and send the messages)"
    )
    print_signing(signing, args.messages)
    print()
    print(
        "  goals: >= 50 % of the bare pipeline (2 processes) at 4 connections for the command "
        "(longer term 80 %), recording <= 10 %"
    )
    print()
    print_attachments(attachment_rounds, args.messages)


def attachment_round(port: int, messages: int) -> dict[str, float]:
    """One round of the attachments pair: the bare pipeline with messages of the size msgrun
    builds with a 100 KiB PDF (one and two processes), and the command sending them."""
    size = attached_size()
    return {
        "size": float(size),
        "bare_two": bare_rate(port, 4, messages, 2, size),
        "command": command_rate(port, 4, messages, None, pdfs=True),
        "bare_one": bare_rate(port, 4, messages, 1, size),
    }


def print_attachments(rounds: list[dict[str, float]], messages: int) -> None:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def share(top: str, bottom: str) -> float:
        return statistics.median(r[top] / r[bottom] for r in rounds)

    size = rounds[0]["size"]
    print(
        f"Attachments: {messages:,} messages each carrying its document's 100 KiB PDF "
        f"({size:,.0f} bytes a message; medians of {len(rounds)} rounds)"
    )
    print(f"  bare pipeline, same size, 4 connections, 1 process  {median('bare_one'):8,.0f} msg/s")
    print(f"  bare pipeline, same size, 4 connections, 2 procs    {median('bare_two'):8,.0f} msg/s")
    print(
        f"  msgrun run start with the PDFs, 4 connections       {median('command'):8,.0f} msg/s  "
        f"= {share('command', 'bare_two'):.0%} of the bare pipeline (2 processes), "
        f"{share('command', 'bare_one'):.0%} of 1 process"
    )
    print("  goal: >= 50 % of the bare pipeline sending messages of the same size")


if __name__ == "__main__":
    main()
