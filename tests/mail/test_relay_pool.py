"""The relay pool when the relay goes silent mid-session: a send or a QUIT whose task is cancelled (as
on stop) is cut off, so the thread smtplib blocks returns at once instead of after the 60 s timeout.

Each test runs its loop with asyncio.run, whose end, as `serve`'s (bot/event_loop.py), cancels the
tasks left and then waits for every thread the loop handed work to: the loop finishing in time is
the proof that no thread was left waiting.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mail.relay import DeliveryStatus, RelayConfig
from mail.relay_pool import RelayPool
from tests.mail.test_relay import MESSAGE, SENDER, EphemeralController, Handler

STOP_SECONDS = 10.0  # well under the relay timeout (60 s); bounds a broken test, not a speed figure


@dataclass
class FallsSilent(Handler):
    """Answers until told to stop answering a command; then takes it and never replies."""

    silent: set[str] = field(default_factory=set)  # "MAIL", "QUIT"
    mail_peers: list[Any] = field(default_factory=list)  # the connection each MAIL came on
    quit_seen: threading.Event = field(default_factory=threading.Event)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        self.mail_peers.append(session.peer)
        if "MAIL" in self.silent:
            await asyncio.Event().wait()
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quit_seen.set()
        if "QUIT" in self.silent:
            await asyncio.Event().wait()
        return "221 Bye"


def relay(handler: Handler) -> tuple[EphemeralController, RelayConfig]:
    controller = EphemeralController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    return controller, RelayConfig.from_url(f"smtp://127.0.0.1:{controller.port}")  # the 60 s default


def finishes(main: Callable[[], Awaitable[None]]) -> bool:
    """Runs `main` in asyncio.run; True if that ended (threads and all) in time."""
    errors: list[BaseException] = []

    def run() -> None:
        async def wrapped() -> None:
            await main()

        try:
            asyncio.run(wrapped())
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(STOP_SECONDS)
    if errors:
        raise errors[0]
    return not thread.is_alive()


async def until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + STOP_SECONDS
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_send_cut_off_at_mail_on_a_kept_connection_returns_and_opens_no_other() -> None:
    handler = FallsSilent()
    controller, config = relay(handler)
    pool = RelayPool(config)

    async def main() -> None:
        delivered = await pool.send(SENDER, "bob@customer.test", MESSAGE)
        assert delivered.status is DeliveryStatus.DELIVERED and pool.idle == 1
        handler.silent.add("MAIL")
        sending = asyncio.create_task(pool.send(SENDER, "carol@customer.test", MESSAGE))
        await until(lambda: len(handler.mail_peers) == 2)  # waiting for the relay's answer to MAIL
        sending.cancel()

    try:
        assert finishes(main), "the loop waited for the send's thread"
        # A connection found closed at MAIL is normally opened again once; one cut off is not.
        assert handler.mail_peers[0] == handler.mail_peers[1] and len(handler.mail_peers) == 2
        assert pool.idle == 0  # not given back
    finally:
        controller.stop()


def test_an_idle_connection_saying_quit_to_a_silent_relay_is_cut_off_when_the_loop_ends() -> None:
    handler = FallsSilent(silent={"QUIT"})
    controller, config = relay(handler)
    pool = RelayPool(config, idle_seconds=0.05)

    async def main() -> None:
        delivered = await pool.send(SENDER, "bob@customer.test", MESSAGE)
        assert delivered.status is DeliveryStatus.DELIVERED
        await until(handler.quit_seen.is_set)  # the idle connection's QUIT gets no answer

    try:
        assert finishes(main), "the loop waited for the QUIT's thread"
    finally:
        controller.stop()
