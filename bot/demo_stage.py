"""The demo's stage: the real service on free local ports, a local Slack, a mail sink, a temporary
database — and the waits the story uses to know that something happened.

Nothing here touches the network: the emulator, the sink and the service listen on 127.0.0.1 and
the service's settings point only at them. The service runs in a thread with its own event loop,
exactly as `servicedesk serve` runs it (`run_service`, all three roles), so the demo shows the
product, not a test double of it.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bot import event_loop
from bot.demo_store import StoreReader
from bot.service import ROLES, RunningService, run_service
from sandbox.mail_sink import MailSink, ReceivedMail
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import BOT_TOKEN, CONNECT, HELP, SIGNING_SECRET, TRIAGE
from store.db import StoreError
from store.settings import Settings, SettingsError

log = logging.getLogger(__name__)

T = TypeVar("T")

SUPPORT_ADDRESS = "support@acme.example"
REPLY_DELAY_SECONDS = 1.0
START_TIMEOUT = 30.0
# Generous: a step normally takes the reply delay plus a few worker turns (well under 2 s); a slow
# CI machine must not turn into a false "product bug" line.
STEP_TIMEOUT = 20.0


class StepFailed(Exception):
    """A step of the story did not happen; the message says what was expected, in plain words."""


class Stage:
    """Everything the story runs against; `start()` brings it up, `stop()` takes it all down."""

    def __init__(self, step_timeout: float = STEP_TIMEOUT) -> None:
        self.step_timeout = step_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="servicedesk-demo-")
        self.folder = Path(self._tmp.name)
        self.emulator = SlackEmulator()
        self.sink = MailSink()
        self.running = RunningService()
        self.settings: Settings | None = None
        self.reader: StoreReader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: list[BaseException] = []
        # Set by the demo's Ctrl-C and SIGTERM handler: waits end on it even when the interrupt's
        # exception was lost (`bot.demo._stop_on_signals`).
        self.interrupted = threading.Event()

    # ----- lifecycle -----

    def start(self) -> Stage:
        self.emulator.start()
        self.sink.start()
        self.settings = Settings(
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=self.emulator.api_url,
            database_url=f"sqlite:///{self.folder / 'servicedesk.db'}",
            http_port=0,  # the OS picks free ports; RunningService says which
            smtp_port=0,
            support_address=SUPPORT_ADDRESS,
            smtp_relay_url=self.sink.url,
            triage_channel=TRIAGE,
            intake_channels=(CONNECT, HELP),
            reply_delay_seconds=REPLY_DELAY_SECONDS,
            files_dir=self.folder / "files",
            # The emulator does not rate-limit unless asked; pacing to Slack's limits would only
            # slow the story down.
            slack_pacing=False,
        )
        self._thread = threading.Thread(target=self._serve, name="servicedesk-demo", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or not self.service_alive:
            reason = str(self._failure[0]) if self._failure else f"not ready within {START_TIMEOUT:.0f} s"
            raise StepFailed(f"the service did not start: {reason}")
        self.reader = StoreReader(self.settings.database_url)
        self.emulator.deliver_events_to(self.events_url)
        return self

    def _serve(self) -> None:
        settings = self.settings
        assert settings is not None

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await run_service(
                settings, set(ROLES), on_ready=lambda _: self._ready.set(), running=self.running
            )

        try:
            event_loop.run(main())
        except (SettingsError, StoreError, OSError) as error:  # told on the main thread by start()
            self._failure.append(error)
        finally:
            self._ready.set()  # never leave start() waiting for a service that is gone

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.running.stop.set)
            self._thread.join(15)
        self.emulator.deliver_events_to(None)
        if self.reader is not None:
            self.reader.dispose()
        self.sink.stop()
        self.emulator.stop()
        self._tmp.cleanup()

    @property
    def service_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._failure

    @property
    def store(self) -> StoreReader:
        assert self.reader is not None, "the stage is not started"
        return self.reader

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.running.http_port}/slack/events"

    @property
    def smtp_port(self) -> int:
        assert self.running.smtp_port is not None
        return self.running.smtp_port

    # ----- waiting on what happened -----

    def until(self, what: str, predicate: Callable[[], T | None], timeout: float | None = None) -> T:
        """Wait until `predicate()` gives something truthy; StepFailed naming `what` otherwise."""
        timeout = self.step_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if self.interrupted.is_set():
                raise KeyboardInterrupt
            if not self.service_alive:
                raise StepFailed(f"{what}: the service stopped")
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise StepFailed(f"{what} (waited {timeout:.0f} s)")
            # Wakes as soon as the emulator changes; the store and the sink are re-read each turn.
            self.emulator.state.wait_changed(0.05)

    def mails(self) -> list[ReceivedMail]:
        # A copy: the sink appends from its own thread (list() of a list is atomic in CPython).
        return list(self.sink.messages)
