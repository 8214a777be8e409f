"""The real SMTP intake on 127.0.0.1, in a thread with its own event loop, for smtplib dialogues."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mail.intake import STOP_GRACE_SECONDS, start_smtp_intake
from store.context import Desk
from store.db import Database
from store.models import InboundItem
from store.settings import Settings

TIMEOUT = 10.0  # bounds a broken test; never an assertion about time
SUPPORT = "support@acme.test"


def intake_desk(db: Database, tmp_path: Path, **more: Any) -> Desk:
    """A desk whose support address is SUPPORT, on the test's database, with these settings."""
    settings = Settings(database_url=db.url, support_address=SUPPORT, files_dir=tmp_path / "files", **more)
    return Desk.build(settings, db)


@dataclass
class ServedIntake:
    port: int
    stop: Callable[[], None]  # begins the intake's close, as the service's stop does
    closed: threading.Event  # set once the close has returned


@contextmanager
def serving_intake(
    desk: Desk, setup: Callable[[], Awaitable[None]] | None = None, *, grace: float = STOP_GRACE_SECONDS
) -> Iterator[ServedIntake]:
    """Serve the intake on an ephemeral port, in a thread with its own loop, until it is stopped
    (at the latest when the block ends). `setup` runs on the intake's loop before it listens;
    `grace` is what its close gives a mail still being sent."""
    loop = asyncio.new_event_loop()
    ready, closed = threading.Event(), threading.Event()
    stop = asyncio.Event()
    port: list[int] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        if setup is not None:
            await setup()
        intake = await start_smtp_intake(desk, host="127.0.0.1", port=0)
        port.append(intake.port)
        ready.set()
        await stop.wait()
        await intake.close(grace)
        closed.set()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported to the test thread below
            failure.append(exc)
            ready.set()
        finally:
            loop.close()

    def begin_stop() -> None:
        with suppress(RuntimeError):  # the loop has ended already: stopped before
            loop.call_soon_threadsafe(stop.set)

    thread = threading.Thread(target=run, name="intake", daemon=True)
    thread.start()
    ready.wait(TIMEOUT)
    if failure:
        raise failure[0]
    try:
        yield ServedIntake(port[0], begin_stop, closed)
    finally:
        begin_stop()
        thread.join(TIMEOUT)


@contextmanager
def running_intake(desk: Desk, setup: Callable[[], Awaitable[None]] | None = None) -> Iterator[int]:
    """Serve the intake on an ephemeral port until the block ends; yields the port.

    `setup` runs on the intake's loop before it listens."""
    with serving_intake(desk, setup) as served:
        yield served.port


def client(port: int) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    smtp.ehlo("client.example")
    return smtp


def rcpt_reply(port: int, address: str) -> tuple[int, bytes]:
    with client(port) as smtp:
        smtp.mail("bob@customer.test")
        return smtp.rcpt(address)


def stored_items(db: Database) -> list[InboundItem]:
    with db.transaction() as session:
        return list(session.scalars(select(InboundItem).order_by(InboundItem.id)))


def mail_bytes(message_id: str | None = "<m1@customer.test>", body: str = "Hello", **headers: str) -> bytes:
    lines = [
        "From: Bob Customer <bob@customer.test>",
        "To: support@acme.test",
        "Subject: Printer on fire",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    if message_id is not None:
        lines.append(f"Message-ID: {message_id}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()
