"""A time limit for the transactions of one piece of work, for an edge that answers within a fixed
time: `/desk` runs its verb before Slack's ack, and Slack shows the person an error after 3 s. A
verb that committed after that would have done what they were told had failed, and they would run
it again; bounded, it is rolled back and answered as such (store.db.StoreBusy).

A context variable, so that every transaction of a verb is bounded without a parameter threaded
through each verb and store action. store.db applies it (the wait for SQLite's write turn, and on
PostgreSQL lock waits and statements); store.sqlite bounds the wait for another process's lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# When the transactions begun in this context (a thread, a task) must be done by, on the monotonic
# clock; None: no limit.
_deadline: ContextVar[float | None] = ContextVar("store_deadline", default=None)


@contextmanager
def within(deadline: float) -> Iterator[None]:
    """Transactions begun inside must be done by `deadline` (a time.monotonic() value)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds left (0 or less once past), or None without a limit."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()
