"""After-commit notices of new work: "an intake item is waiting", "an outbox row is due".

A store function that makes work claimable (a new intake item or outbox row, a retry, a row given
back) marks its session with `note()`. When that session's transaction commits, every subscriber
is told, on the committing thread, after the commit: a woken worker always finds the row. A
transaction that rolls back tells no one.

This reaches subscribers in this process only. Work committed by another process (a second
`servicedesk serve`, or `--role web` apart from `--role worker`) is found by the worker's poll,
which stays as the fallback; PostgreSQL LISTEN/NOTIFY could carry notices between processes later.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

_INFO_KEY = "servicedesk.wakeups"
_ARRIVALS_KEY = "servicedesk.arrivals"


class Topic(enum.StrEnum):
    INTAKE = "intake"  # an intake item (email, Slack event) is claimable
    OUTBOX = "outbox"  # an outbox row is claimable


# Distinct due times one transaction reports per topic, the soonest kept: enough for a reply's
# delayed emails or a retry; a later one beyond them is found by the worker's poll.
MAX_DUE_TIMES = 8


@dataclass(frozen=True)
class Notice:
    """What one commit made claimable: for each topic, when (None: now; else a UTC time)."""

    due: dict[Topic, frozenset[datetime | None]]
    # New inputs the edges committed in it (mails, Slack events): the worker paces itself by their rate.
    arrivals: int = 0


Subscriber = Callable[[Notice], None]


def note(session: Session, topic: Topic, due_at: datetime | None = None) -> None:
    """Mark the session's transaction as making `topic` work claimable at `due_at` (None: now)."""
    marks: dict[Topic, set[datetime | None]] = session.info.setdefault(_INFO_KEY, {})
    times = marks.setdefault(topic, set())
    times.add(None if due_at is None else _aware(due_at))
    if len(times) > MAX_DUE_TIMES:
        times.remove(max(t for t in times if t is not None))


def note_arrivals(session: Session, count: int) -> None:
    """Mark the session's transaction as storing `count` new inputs from the edges, claimable now."""
    note(session, Topic.INTAKE)
    session.info[_ARRIVALS_KEY] = session.info.get(_ARRIVALS_KEY, 0) + count


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time the store writes is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Wakeups:
    """The subscribers of one Database's sessions. Thread-safe: commits happen on many threads."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        event.listen(sessions, "after_commit", self._after_commit)
        # A rolled-back transaction made nothing claimable. Both events also fire for savepoints
        # (begin_nested), which neither commit nor roll back the transaction: those are ignored, so
        # a released savepoint tells nobody early, and a rolled-back one keeps the marks made
        # before it (its own marks stay too: at worst a spurious wake-up, which costs one claim).
        event.listen(sessions, "after_rollback", self._forget)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` after each commit that made work claimable; returns the unsubscribe.

        It runs on the committing thread, which may still hold SQLite's write turn: it must be quick
        and must not write (on_loop hands the notice to an event loop, and that is all)."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def _forget(self, session: Session) -> None:
        if not session.in_nested_transaction():
            session.info.pop(_INFO_KEY, None)
            session.info.pop(_ARRIVALS_KEY, None)

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint released: the transaction has not committed yet
        marks = session.info.pop(_INFO_KEY, None)
        arrivals = session.info.pop(_ARRIVALS_KEY, 0)
        if not marks:
            return
        with self._lock:
            subscribers = list(self._subscribers)
        notice = Notice(due={topic: frozenset(times) for topic, times in marks.items()}, arrivals=arrivals)
        for subscriber in subscribers:
            # The commit has happened: a subscriber's failure must not reach the committing code,
            # which would take it for a failed commit (an SMTP 451 for a stored message).
            try:
                subscriber(notice)
            except Exception:
                log.exception("a wake-up subscriber failed")


def on_loop(loop: asyncio.AbstractEventLoop, subscriber: Subscriber) -> Subscriber:
    """`subscriber`, run on `loop` (commits happen on worker threads; asyncio is not thread-safe)."""

    def call(notice: Notice) -> None:
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(subscriber, notice)

    return call
