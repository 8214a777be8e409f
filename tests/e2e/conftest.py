"""End-to-end fixtures: the real service, in-process, talking to the Slack emulator and a mail sink.

    def test_something(service: RunningDesk) -> None:
        service.send_mail(raw)                               # smtplib into the real SMTP intake
        card = service.wait_for(service.card, "the card")    # polls, never a fixed sleep
        service.post_as(ALICE, "Thanks!", thread_ts=card.ts)   # a staff reply through the emulator
        [mail] = service.wait_for_mails(2)

`service` runs `bot.service.run_service` with all three roles (web, smtp, worker) on free ports in a
thread of its own (its own event loop), against a fresh database from the `database_url` fixture,
with a short reply delay. `start_service(**settings)` starts one with other settings (and can be
called more than once in a test, e.g. to restart); `start_service(socket_mode=True)` runs it as
`serve --socket-mode` does, its events coming over the emulator's socket;
`start_service(worker_config=WorkerConfig(...))` tunes its worker (e.g. a very long poll). Waits use
real, short delays and poll for a condition; timeouts only bound a broken test and are never asserted.
"""

from __future__ import annotations

import asyncio
import os
import random
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.service import ROLES, RunningService, run_service
from bot.worker import WorkerConfig
from sandbox.mail_sink import MailSink, ReceivedMail
from sandbox.slack_emulator import SlackEmulator
from sandbox.state import Message
from sandbox.workspace import APP_TOKEN, BOT_TOKEN, BOT_USER, SIGNING_SECRET, TRIAGE
from store.db import Database
from store.settings import Settings

T = TypeVar("T")

SUPPORT = "support@acme.test"
REPLY_DELAY_SECONDS = 0.5
WAIT_SECONDS = 20.0  # bounds a broken test; never an assertion about speed
START_SECONDS = 30.0


# Ports a test picks for a service it starts later. The kernel's own picks (port 0, and every
# outgoing connection) come from 32768 up, where a port free now may be another process's by the
# time the service binds it: CI runs the SQLite and PostgreSQL suites side by side, and one's HTTP
# port turned out to be the other's SMTP intake. Below that range, each suite keeps to its own
# block, and this process never hands out a port twice.
_PORT_BLOCKS = {False: range(20_000, 26_000), True: range(26_000, 32_000)}
_handed_out: set[int] = set()


def free_port() -> int:
    block = _PORT_BLOCKS[bool(os.environ.get("SERVICEDESK_TEST_DATABASE_URL"))]
    for _ in range(200):
        port = random.choice(block)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken by something else on this machine
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between {block.start} and {block.stop}")


def wait_until(
    predicate: Callable[[], T | None], what: str = "a condition", timeout: float = WAIT_SECONDS
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; fail naming `what`."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class ServiceThread:
    """`run_service` on its own event loop in a background thread; `stop()` is SIGTERM's path."""

    def __init__(
        self,
        settings: Settings,
        roles: set[str],
        *,
        socket_mode: bool = False,
        worker_config: WorkerConfig | None = None,
    ) -> None:
        self.settings = settings
        self.roles = roles
        self.socket_mode = socket_mode
        self.worker_config = worker_config
        self.running = RunningService()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="servicedesk", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await run_service(
                self.settings,
                self.roles,
                socket_mode=self.socket_mode,
                on_ready=lambda _: self._ready.set(),
                running=self.running,
                worker_config=self.worker_config,
            )

        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the test thread by start()/stop()
            self._error.append(exc)
        finally:
            self._ready.set()

    def start(self) -> RunningService:
        self._thread.start()
        if not self._ready.wait(START_SECONDS):
            raise RuntimeError("the service did not start")
        if self._error:
            raise self._error[0]
        return self.running

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.running.stop.set)
        self._thread.join(START_SECONDS)
        if self._error:
            raise self._error[0]


@dataclass
class RunningDesk:
    """A started service and what it talks to, with helpers to drive it and watch what happens."""

    settings: Settings
    emulator: SlackEmulator
    sink: MailSink
    db: Database  # the test's own connection, for looking into the store
    http_url: str
    smtp_port: int
    _thread: ServiceThread = field(repr=False)

    # ----- driving it -----

    def smtp(self) -> smtplib.SMTP:
        """A connected, EHLO'd client of the service's SMTP intake (use it in a `with`)."""
        client = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=WAIT_SECONDS)
        client.ehlo("mx.customer.test")
        return client

    def send_mail(
        self, raw: bytes, *, mail_from: str = "bob@customer.test", rcpt_tos: tuple[str, ...] = (SUPPORT,)
    ) -> tuple[int, bytes]:
        """One SMTP transaction; the DATA reply (code, text). A refused recipient raises."""
        with self.smtp() as client:
            code, text = client.mail(mail_from)
            assert code == 250, (code, text)
            for rcpt in rcpt_tos:
                code, text = client.rcpt(rcpt)
                if code != 250:
                    raise smtplib.SMTPRecipientsRefused({rcpt: (code, text)})
            return client.data(raw)

    def post_as(self, user: str, text: str, *, thread_ts: str, files: list[Any] | None = None) -> str:
        """A person writes in a triage thread (the app gets the event, signed, over HTTP)."""
        return self.emulator.user_post(user, TRIAGE, text, thread_ts=thread_ts, files=files)

    def stop(self) -> None:
        self._thread.stop()

    # ----- watching it -----

    def wait_for(
        self, predicate: Callable[[], T | None], what: str = "a condition", timeout: float = WAIT_SECONDS
    ) -> T:
        return wait_until(predicate, what, timeout)

    def cards(self) -> list[Message]:
        """The bot's top-level messages in the triage channel: one card per ticket."""
        return [m for m in self.emulator.messages(TRIAGE) if m.user == BOT_USER or m.bot_id]

    def card(self, number: int = 1) -> Message | None:
        return next((m for m in self.cards() if f"#{number}" in (m.text or "")), None)

    def thread(self, ts: str) -> list[Message]:
        """The replies in a triage thread (the card itself left out)."""
        return self.emulator.messages(TRIAGE, thread_ts=ts)[1:]

    def thread_text(self, ts: str) -> str:
        return "\n".join(message_text(m) for m in self.thread(ts))

    def wait_for_thread_text(self, ts: str, needle: str) -> str:
        """The thread's text once `needle` shows in it."""

        def found() -> str | None:
            text = self.thread_text(ts)
            return text if needle in text else None

        return wait_until(found, f"{needle!r} in the thread")

    def wait_for_mails(self, count: int) -> list[ReceivedMail]:
        """At least `count` mails in the sink; returns them all, oldest first."""

        def arrived() -> list[ReceivedMail] | None:
            mails = list(self.sink.messages)
            return mails if len(mails) >= count else None

        return wait_until(arrived, f"{count} mails")


def message_text(message: Message) -> str:
    """A Slack message's words: its text and every text in its blocks."""
    parts = [message.text or ""]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            text = node.get("text")
            if isinstance(text, str):
                parts.append(text)
            for value in node.values():
                if isinstance(value, dict | list):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.blocks or [])
    return "\n".join(parts)


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as running:
        yield running


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


StartService = Callable[..., RunningDesk]


@pytest.fixture
def start_service(
    database_url: str, tmp_path: Path, emulator: SlackEmulator, mail_sink: MailSink
) -> Iterator[StartService]:
    """Start the service with the test defaults, overridden by keyword (Settings field names)."""
    started: list[RunningDesk] = []
    db = Database(database_url)

    def start(
        *,
        roles: set[str] | None = None,
        socket_mode: bool = False,
        worker_config: WorkerConfig | None = None,
        **overrides: Any,
    ) -> RunningDesk:
        http_port = int(overrides.pop("http_port", free_port()))
        values: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": emulator.api_url,
            "database_url": database_url,
            "http_host": "127.0.0.1",
            "http_port": http_port,
            "smtp_host": "127.0.0.1",
            "smtp_port": 0,
            "support_address": SUPPORT,
            "smtp_relay_url": mail_sink.url,
            "sender_name": "ACME Support",
            "triage_channel": TRIAGE,
            "reply_delay_seconds": REPLY_DELAY_SECONDS,
            "files_dir": tmp_path / "files",
            "public_url": f"http://127.0.0.1:{http_port}",
            # Socket Mode (`serve --socket-mode`): events come over the emulator's socket instead.
            **({"slack_app_token": APP_TOKEN} if socket_mode else {}),
            **overrides,
        }
        thread = ServiceThread(
            Settings(**values), roles or set(ROLES), socket_mode=socket_mode, worker_config=worker_config
        )
        running = thread.start()
        http_url = f"http://127.0.0.1:{running.http_port}"
        if socket_mode:
            emulator.wait_for_socket(timeout=START_SECONDS)
        elif running.http_port is not None:
            emulator.deliver_events_to(f"{http_url}/slack/events", SIGNING_SECRET)
        desk = RunningDesk(
            settings=thread.settings,
            emulator=emulator,
            sink=mail_sink,
            db=db,
            http_url=http_url,
            smtp_port=running.smtp_port or 0,
            _thread=thread,
        )
        started.append(desk)
        return desk

    yield start
    try:
        for desk in reversed(started):
            desk.stop()
    finally:
        db.dispose()


@pytest.fixture
def service(start_service: StartService) -> RunningDesk:
    """The service with every role and the test defaults."""
    return start_service()
