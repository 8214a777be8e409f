"""The service under test: `servicedesk serve` in its own process, with the sandbox around it.

The Slack emulator and the mail sink run in the bench process (their own threads and loops); the
service is a subprocess configured only through its environment, as an operator would run it:
SLACK_API_URL at the emulator, SERVICEDESK_SMTP_RELAY_URL at the sink, a temporary SQLite file or
a fresh PostgreSQL database. The emulator delivers Slack's events to the service's
/slack/events, so the service also receives the echo of each of its own posts, as on Slack.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import smtpload
from benchlib import LOOPBACK, ROOT, free_port, proc_cpu_seconds

from sandbox.mail_sink import MailSink
from sandbox.slack_emulator import SlackEmulator
from sandbox.state import CallRecord
from sandbox.workspace import TRIAGE, Workspace, default_workspace

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "servicedesk_bench"
SUPPORT_ADDRESS = "support@helpdesk.example"
SERVE = str(ROOT / ".venv" / "bin" / "servicedesk")
STOP_LIMIT_SECONDS = 10.0  # DESIGN.md: serve exits 0 within 10 s of SIGTERM


def _pg(statement: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(statement)


def _is_card(call: CallRecord) -> bool:
    return (
        call.method == "chat.postMessage"
        and call.ok
        and call.channel == TRIAGE
        and not call.params.get("thread_ts")
    )


def _auto_replied(message: Any) -> bool:
    return str(message["Auto-Submitted"] or "").startswith("auto-replied")


@dataclass
class Stack:
    backend: str = "sqlite"  # or "postgresql"
    workspace: Workspace = field(default_factory=default_workspace)
    rate_limits: bool = False
    env: dict[str, str] = field(default_factory=dict)
    serve_args: list[str] = field(default_factory=list)
    wrap: list[str] = field(default_factory=list)  # e.g. a profiler in front of the service
    # Called with the database URL once the database exists and before the service starts.
    prepare: Callable[[str], None] | None = None
    # More `serve --role worker` processes beside the service, on its store: the design's scale-out.
    extra_workers: int = 0

    def __post_init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="sd-bench-"))
        self.emulator = SlackEmulator(self.workspace)
        self.sink = MailSink()
        self.proc: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.smtp_port = free_port()
        self.http_port = free_port()
        self.exit_code: int | None = None

    @property
    def database_url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.workdir / 'servicedesk.db'}"
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Stack:
        self.emulator.start()
        self.emulator.rate_limits(enabled=self.rate_limits)
        self.sink.start()
        if self.backend == "postgresql":
            _pg(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
            _pg(f'CREATE DATABASE "{PG_DATABASE}"')
        if self.prepare is not None:
            self.prepare(self.database_url)
        ws = self.workspace
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.workdir)),
            # Set by `--code REF`: the service runs the same committed code as the bench.
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "SLACK_BOT_TOKEN": ws.bot_token,
            "SLACK_SIGNING_SECRET": ws.signing_secret,
            "SLACK_API_URL": self.emulator.api_url,
            "SERVICEDESK_TRIAGE_CHANNEL": TRIAGE,
            "SERVICEDESK_DATABASE_URL": self.database_url,
            "SERVICEDESK_SMTP_PORT": str(self.smtp_port),
            "SERVICEDESK_HTTP_PORT": str(self.http_port),
            "SERVICEDESK_SMTP_RELAY_URL": self.sink.url,
            "SERVICEDESK_SUPPORT_ADDRESS": SUPPORT_ADDRESS,
            "SERVICEDESK_FILES_DIR": str(self.workdir / "files"),
            # The service paces itself to Slack's limits only when the emulator enforces them,
            # as an operator would set it for an endpoint without them.
            "SERVICEDESK_SLACK_PACING": "true" if self.rate_limits else "false",
            **self.env,
        }
        self.proc = self._spawn([*self.wrap, SERVE, "serve", *self.serve_args], env, "serve.log")
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        for number in range(self.extra_workers):
            worker = [SERVE, "serve", "--role", "worker"]
            self.workers.append(self._spawn(worker, env, f"worker-{number + 1}.log"))
        if "web" in self._roles():
            self.emulator.deliver_events_to(self.events_url)
        return self

    def _spawn(self, command: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
        # The work dir is the working folder, so no stray .env from elsewhere is read. The child
        # keeps its own handle on the log.
        with open(self.workdir / log_name, "wb") as log:
            return subprocess.Popen(command, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        """CPU of every service process so far: the service and its extra workers."""
        return sum(proc_cpu_seconds(proc.pid) for proc in [self.proc, *self.workers] if proc is not None)

    @property
    def events_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}/slack/events"

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        roles = self._roles()
        while not self._ready(roles):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _ready(self, roles: set[str]) -> bool:
        if "smtp" in roles:
            try:
                socket.create_connection((LOOPBACK, self.smtp_port), timeout=1).close()
            except OSError:
                return False
        if "web" in roles:
            try:
                with urllib.request.urlopen(
                    f"http://{LOOPBACK}:{self.http_port}/healthz", timeout=2
                ) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False
        return True

    def _roles(self) -> set[str]:
        roles = {self.serve_args[i + 1] for i, a in enumerate(self.serve_args) if a == "--role"}
        return roles or {"web", "smtp", "worker"}

    def stop(self) -> int | None:
        """SIGTERM the service (and its extra workers); the exit code, or None when one had to be
        killed after 10 s. With extra workers: the first code that is not 0, else 0."""
        processes = [proc for proc in [self.proc, *self.workers] if proc is not None]
        for proc in processes:
            proc.send_signal(signal.SIGTERM)  # all at once: each drains while the others do
        codes = [smtpload.wait_or_kill(proc, STOP_LIMIT_SECONDS) for proc in processes]
        if processes:
            self.exit_code = next((code for code in codes if code != 0), 0)
        self.emulator.stop()
        self.sink.stop()
        if self.backend == "postgresql":
            _pg(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        return self.exit_code

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.workdir / "serve.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ----- what reached Slack and the mail sink -----

    def cards(self) -> list[CallRecord]:
        """Successful top-level posts into the triage channel: one per ticket."""
        return [c for c in self.emulator.calls if _is_card(c)]

    def card_count(self) -> int:
        with self.emulator.state.lock:
            return sum(
                1
                for c in self.emulator.state.calls
                if c.method == "chat.postMessage"
                and c.ok
                and c.channel == TRIAGE
                and not c.params.get("thread_ts")
            )

    def acknowledgements(self) -> int:
        """Mails in the sink that answer a customer automatically (RFC 3834 auto-replied)."""
        return sum(
            1 for m in self.sink.messages if (m.message["Auto-Submitted"] or "").startswith("auto-replied")
        )

    def wait_for_cards(self, count: int, timeout: float) -> bool:
        """Until `count` cards are in the emulator; False if `timeout` seconds pass first."""
        return self.wait_until(lambda: self.card_count() >= count, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(poll)
        return True

    def healthz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}/healthz", timeout=5) as answer:
            body = answer.read()
        try:
            return dict(json.loads(body))
        except ValueError:
            return {"body": body.decode(errors="replace")}
