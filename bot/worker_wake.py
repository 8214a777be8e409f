"""What one worker loop waits for: news of work due now, the soonest due time it knows, or a poke.

Each loop (intake, delivery) has one `WorkSignal`. Notices of committed work (store/wakeups.py)
arrive on the loop thread and either say "due now" (`news`) or name a later due time, which the
loop sleeps until instead of its whole poll interval. Everything here runs on the event loop's
thread: no locks, and a check followed by `sleep_until` cannot miss a wake-up, since nothing else
runs between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from datetime import UTC, datetime

DUE_MARGIN = 0.01  # seconds


class WorkSignal:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.news = False  # work became due since the loop's last pass began
        self._later: list[float] = []  # loop times (a heap) of later work this process wrote

    @property
    def next_due(self) -> float | None:
        return self._later[0] if self._later else None

    def announce(self, at: float | None, now: float) -> None:
        """Work is claimable at loop time `at` (None: now)."""
        if at is None or at <= now:
            self.news = True
        else:
            heapq.heappush(self._later, at)
        self._event.set()

    def poke(self) -> None:
        """Something else changed (stop, a freed slot): a sleeping loop looks again."""
        self._event.set()

    def begin_pass(self, now: float) -> None:
        """The loop is about to claim: what is due by now is covered by this pass."""
        self.news = False
        while self._later and self._later[0] <= now:
            heapq.heappop(self._later)

    def until(self, deadline: float) -> float:
        """The poll's deadline, brought forward to the soonest known due time."""
        return deadline if self.next_due is None else min(deadline, self.next_due)

    async def sleep_until(self, until: float, now: float) -> None:
        """Sleep until loop time `until`, or until announced or poked."""
        if until <= now:
            return
        self._event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout=until - now)


def loop_time_of(due: datetime | None, loop_now: float, wall_now: datetime) -> float | None:
    """A store due time (UTC; naive from SQLite) as loop time; None stays "now"."""
    if due is None:
        return None
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    # A little late rather than early: the claim compares with the wall clock, and a pass that
    # comes a hair too soon finds nothing and leaves the row to the poll.
    return loop_now + (due - wall_now).total_seconds() + DUE_MARGIN
