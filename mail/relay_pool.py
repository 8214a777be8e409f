"""Relay connections shared by one worker's sends, so a batch of due mail shares a connection.

The worker performs the rows it claimed together, concurrently; each send borrows an idle connection
(or opens one, up to `size` at once) and gives it back, so fifty mails due together travel over a
few SMTP sessions, not fifty. An idle connection is closed after `idle_seconds`. A relay outage is
logged once when it starts and once when it ends, not once per mail (as Mailman's outgoing runner).

smtplib blocks, so each SMTP exchange runs in a thread. When the task awaiting one is cancelled (on
stop: the worker gives up on the rows still in flight, or the loop closing cancels what is left),
the connection is cut off, so the thread returns at once instead of waiting out the relay timeout
(60 s) on a relay that went silent: a thread cannot be cancelled, and the process cannot exit while
one runs. The cut-off send's result is never read; its row is given back like any row in flight on
stop (docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from mail.relay import DeliveryStatus, RelayConfig, RelayConnection, SendResult

log = logging.getLogger(__name__)

DEFAULT_SIZE = 4
DEFAULT_IDLE_SECONDS = 10.0

P = ParamSpec("P")
T = TypeVar("T")


class RelayPool:
    def __init__(
        self,
        config: RelayConfig,
        *,
        size: int = DEFAULT_SIZE,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        connection_factory: Callable[[RelayConfig], RelayConnection] = RelayConnection,
    ) -> None:
        self.config = config
        self.idle_seconds = idle_seconds
        self._factory = connection_factory
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[RelayConnection, float]] = []
        self._relay_down = False
        self._closing: set[asyncio.Task[None]] = set()  # idle connections saying QUIT
        self.opened = 0  # connections made, for tests and figures

    async def send(self, envelope_from: str, recipient: str, message: bytes) -> SendResult:
        async with self._slots:
            connection = self._borrow()
            # Cancelled meanwhile, the connection is cut off and not given back.
            result = await _in_thread(connection, connection.send, envelope_from, recipient, message)
            self._give_back(connection)
        self._note(result)
        return result

    @property
    def idle(self) -> int:
        """Open connections waiting for the next send."""
        return len(self._idle)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection, _since in idle:
            await _in_thread(connection, connection.close)

    def _borrow(self) -> RelayConnection:
        if self._idle:
            connection, _since = self._idle.pop()
            return connection
        self.opened += 1
        return self._factory(self.config)

    def _give_back(self, connection: RelayConnection) -> None:
        loop = asyncio.get_running_loop()
        given_back = loop.time()
        self._idle.append((connection, given_back))
        loop.call_later(self.idle_seconds, self._close_idle, given_back)

    def _close_idle(self, given_back: float) -> None:
        """The timer of the connection given back at `given_back`: it, and every one given back before
        it and not used since, have been idle long enough. (Reading the clock here instead would miss
        them: uvloop fires timers a moment early, and nothing would look again.)"""
        stale = [entry for entry in self._idle if entry[1] <= given_back]
        if not stale:
            return
        self._idle = [entry for entry in self._idle if entry not in stale]
        for connection, _since in stale:
            # QUIT waits for the relay's answer: not on the loop. A task, kept until done, that a loop
            # closing meanwhile cancels (which cuts the connection off).
            task = asyncio.get_running_loop().create_task(_in_thread(connection, connection.close))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _note(self, result: SendResult) -> None:
        if result.status is DeliveryStatus.DELIVERED or not result.relay_problem:
            if self._relay_down:
                log.info("outbound relay %s works again", self.config.redacted_url())
                self._relay_down = False
            return
        if not self._relay_down:
            log.error(
                "outbound relay %s unusable, mail waits in the outbox: %s",
                self.config.redacted_url(),
                result.describe(),
            )
            self._relay_down = True


async def _in_thread(
    connection: RelayConnection, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """`call` (blocking SMTP on `connection`) in a thread; the connection cut off if this is cancelled."""
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except asyncio.CancelledError:
        connection.abort()  # the thread fails at once; nobody reads what it returns
        raise
