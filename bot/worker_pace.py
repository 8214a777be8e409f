"""Edge first: while input pours in, the worker takes its turns at a bounded pace.

The edges (SMTP's 250, Slack's HTTP 200) answer once the input is committed; turning it into
tickets and posts can wait a little, since it is safe in the store. On a busy machine the worker
and the edges share the CPU (and, in one process, the GIL): during a burst of mail a worker at full
speed takes most of it, and senders wait longer for their 250 than they need to. So while new
intake items arrive faster than `busy_rate` a second, each unit of the worker's work (one intake
item, one delivery) waits for its turn, at most `worker_rate` turns a second; the rest of the
time it never waits. The worker is slowed, never stopped: a burst that never ends still gets its
tickets, `worker_rate` units a second.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable


class EdgeFirst:
    def __init__(
        self,
        busy_rate: float,
        worker_rate: float,
        *,
        window: float = 1.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.busy_rate = busy_rate
        self.interval = 1.0 / worker_rate
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._arrivals: deque[float] = deque()
        self._next_turn = float("-inf")

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def arrived(self, count: int = 1) -> None:
        """An edge committed `count` new intake items (called on the worker's loop)."""
        now = self._now()
        self._arrivals.extend([now] * count)
        self._forget_before(now - self.window)

    def busy(self) -> bool:
        """Are items arriving faster than `busy_rate` a second (over the last `window`)?"""
        self._forget_before(self._now() - self.window)
        return len(self._arrivals) > self.busy_rate * self.window

    async def turn(self) -> None:
        """Wait for this unit's turn while the edges are busy; at once otherwise."""
        if not self.busy():
            return
        now = self._now()
        # Turns are handed out in order, `interval` apart: each waiter reserves the next one.
        slot = max(now, self._next_turn + self.interval)
        self._next_turn = slot
        if slot > now:
            await self._sleep(slot - now)

    def _forget_before(self, oldest: float) -> None:
        while self._arrivals and self._arrivals[0] < oldest:
            self._arrivals.popleft()
