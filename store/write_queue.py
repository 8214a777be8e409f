"""One process's queue for SQLite's single write lock: waiters are handed the lock in turn.

SQLite lets one connection write at a time, and a connection that finds the lock taken sleeps in
its busy handler and polls: under load a waiter can sleep through many commits and be overtaken
by newcomers again and again (the SMTP DATA -> 250 p99 of a second). Threads of one process wait
here instead, before `BEGIN IMMEDIATE`, so the lock passes to the next waiter the moment it is
released. Writes an edge is waiting on (SMTP 250, Slack's HTTP 200) go before queued worker
writes, but never more than URGENT_STREAK times in a row while a worker write waits, so a flood of
mail cannot starve the worker. Between processes SQLite's busy_timeout stays the fallback.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

# Urgent writes handed the lock in a row before a waiting ordinary write gets its turn.
URGENT_STREAK = 8


class WriteQueueTimeout(Exception):
    """The lock was not handed over within the timeout (the database is that busy)."""


class NestedWrite(RuntimeError):
    """A thread asked for the write lock it already holds: that would wait for itself forever."""


@dataclass
class _Waiter:
    thread: int
    granted: threading.Event = field(default_factory=threading.Event)


class WriteQueue:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._urgent: deque[_Waiter] = deque()
        self._ordinary: deque[_Waiter] = deque()
        self._streak = 0

    def acquire(self, *, urgent: bool = False, timeout: float) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                raise NestedWrite("a write transaction was opened inside another on the same thread")
            if self._owner is None:
                self._owner = me
                return
            waiter = _Waiter(me)
            (self._urgent if urgent else self._ordinary).append(waiter)
        if waiter.granted.wait(timeout):
            return
        with self._mutex:
            if waiter.granted.is_set():
                return  # handed over just as the wait ran out: it is ours
            (self._urgent if urgent else self._ordinary).remove(waiter)
        raise WriteQueueTimeout(f"no turn at the write lock within {timeout:g} s")

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("the write lock is released by a thread that does not hold it")
            nxt = self._next()
            self._owner = nxt.thread if nxt is not None else None
            if nxt is not None:
                nxt.granted.set()

    def _next(self) -> _Waiter | None:
        if self._urgent and (not self._ordinary or self._streak < URGENT_STREAK):
            self._streak += 1
            return self._urgent.popleft()
        self._streak = 0
        return self._ordinary.popleft() if self._ordinary else None

    @property
    def held(self) -> bool:
        return self._owner is not None

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._ordinary)
