"""SMTP load for the intake benchmarks: smtplib clients in their own processes, and the bare limit.

Clients are separate processes (not threads) so they are not GIL-bound against each other or
against the bench driver. Each client opens a new connection per message (EHLO, MAIL, RCPT, DATA,
QUIT), as the many independent mail servers that deliver to a real MX do, and times DATA -> 250.
Times are `time.monotonic()` (CLOCK_MONOTONIC is system-wide on Linux), so the driver can match a
250 with the moment the ticket's card reached the Slack emulator.

`python bench/smtpload.py --count-only PORT` is the reference server: aiosmtpd with a handler
that only counts, in its own process, the same SMTP options as our intake.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import signal
import smtplib
import subprocess
import sys
import time
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from benchlib import LOOPBACK, wait_for_port

CLIENT_HOSTNAME = "client.bench.local"
SERVER_HOSTNAME = "mx.bench.local"


@dataclass
class Sent:
    index: int
    data_at: float  # monotonic, just before DATA
    answered_at: float  # monotonic, when 250 (or the refusal) arrived
    code: int


@dataclass
class LoadResult:
    sent: list[Sent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def accepted(self) -> list[Sent]:
        return [s for s in self.sent if s.code == 250]

    @property
    def wall(self) -> float:
        return self.finished - self.started

    @property
    def rate(self) -> float:
        return len(self.accepted) / self.wall if self.wall > 0 else 0.0

    def latencies_ms(self) -> list[float]:
        return [1000 * (s.answered_at - s.data_at) for s in self.accepted]


def envelope_sender(raw: bytes) -> str:
    headers = BytesHeaderParser().parsebytes(raw)
    return parseaddr(str(headers.get("From", "")))[1] or "customer@example.com"


def _client(
    port: int,
    recipient: str,
    work: list[tuple[int, bytes]],
    deadline: float,
    start: Any,
    out: Any,
    pace: float,
) -> None:
    """Send each message on its own connection; stop at the deadline (monotonic)."""
    sent: list[Sent] = []
    errors: list[str] = []
    start.wait()
    next_at = time.monotonic()
    for index, raw in work:
        if time.monotonic() > deadline:
            errors.append("deadline reached")
            break
        if pace:
            # Open-loop pacing: fixed send times, so a slow answer does not lower the offered rate.
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at += pace
        try:
            with smtplib.SMTP(LOOPBACK, port, local_hostname=CLIENT_HOSTNAME, timeout=30) as smtp:
                smtp.ehlo()
                smtp.mail(envelope_sender(raw))
                smtp.rcpt(recipient)
                data_at = time.monotonic()
                code, _ = smtp.data(raw)
                sent.append(Sent(index, data_at, time.monotonic(), code))
        except smtplib.SMTPResponseException as exc:
            sent.append(Sent(index, 0.0, time.monotonic(), exc.smtp_code))
            errors.append(f"{exc.smtp_code} {exc.smtp_error!r}")
        except (smtplib.SMTPException, OSError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    out.put((sent, errors))


def send_all(
    port: int,
    messages: list[bytes],
    *,
    clients: int = 8,
    recipient: str = "support@helpdesk.example",
    time_limit: float = 300.0,
    rate: float = 0.0,
) -> LoadResult:
    """Send every message once, split round-robin over `clients` processes.

    rate > 0 paces the clients to that many messages per second in total (open loop).
    Bounded by the message count and by `time_limit` seconds.
    """
    ctx = mp.get_context("spawn")  # the driver runs emulator threads: never fork them
    start = ctx.Event()
    out = ctx.Queue()
    deadline = time.monotonic() + time_limit
    pace = clients / rate if rate > 0 else 0.0
    procs = []
    for c in range(clients):
        work = [(i, messages[i]) for i in range(c, len(messages), clients)]
        procs.append(ctx.Process(target=_client, args=(port, recipient, work, deadline, start, out, pace)))
    for proc in procs:
        proc.start()
    time.sleep(0.5)  # let every client reach the start line (spawn imports take a moment)
    result = LoadResult(started=time.monotonic())
    if rate > 0:
        # Stagger the paced clients evenly over one interval.
        for c in range(clients):
            time.sleep(pace / clients if c else 0)
        start.set()
    else:
        start.set()
    for _ in procs:
        sent, errors = out.get(timeout=time_limit + 60)
        result.sent += sent
        result.errors += errors
    result.finished = max((s.answered_at for s in result.sent), default=time.monotonic())
    for proc in procs:
        proc.join()
    result.sent.sort(key=lambda s: s.index)
    return result


# ----- the reference: a count-only aiosmtpd -----


class CountingHandler:
    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 2.0.0 OK: counted"


def serve_count_only(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    handler = CountingHandler()
    loop = asyncio.new_event_loop()

    def protocol() -> SMTP:
        # The same options as our intake, and an explicit hostname (no getfqdn() per connection).
        return SMTP(
            handler,
            hostname=SERVER_HOSTNAME,
            data_size_limit=26214400,
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=loop,
        )

    server = loop.run_until_complete(loop.create_server(protocol, LOOPBACK, port, backlog=512))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        print(f"count-only server received {handler.messages} messages", file=sys.stderr)


def start_count_only(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(Path(__file__)), "--count-only", str(port)])
    wait_for_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM and wait; the exit code, or None when it had to be killed."""
    proc.send_signal(signal.SIGTERM)
    return wait_or_kill(proc, timeout)


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Its exit code once it ends, or None when it had to be killed after `timeout` seconds."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count-only", type=int, metavar="PORT", required=True)
    serve_count_only(parser.parse_args().count_only)
