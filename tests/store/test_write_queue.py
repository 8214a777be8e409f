"""SQLite's write lock in one process: a queue that hands the lock over, urgent writes first,
and is never left held, whatever happens inside the transaction."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text

from store.db import Database, StoreUnavailable
from store.sqlite import write_queue
from store.write_queue import URGENT_STREAK, NestedWrite, WriteQueue, WriteQueueTimeout

ON_POSTGRES = bool(os.environ.get("SERVICEDESK_TEST_DATABASE_URL"))
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="the queue is SQLite's (PostgreSQL locks rows)")


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition another thread will make true (bounded, so a bug fails instead of hanging)."""
    for _ in range(5000):
        if condition():
            return
        time.sleep(0.002)
    raise AssertionError("the other thread never got there")


def start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# ----- the queue itself -----


def queue_order(queue: WriteQueue, kinds: list[bool]) -> list[int]:
    """Start one waiter per entry (True = urgent) while the lock is held; the order they got it."""
    got: list[int] = []
    queue.acquire(timeout=5)

    def waiter(index: int, urgent: bool) -> None:
        queue.acquire(urgent=urgent, timeout=5)
        got.append(index)
        queue.release()

    threads = []
    for index, urgent in enumerate(kinds):
        threads.append(start(lambda i=index, u=urgent: waiter(i, u)))  # type: ignore[misc]
        wait_until(lambda n=index + 1: queue.waiting == n)  # type: ignore[misc]
    queue.release()
    for thread in threads:
        thread.join(5)
    return got


def test_waiters_get_the_lock_in_the_order_they_came() -> None:
    assert queue_order(WriteQueue(), [False] * 5) == [0, 1, 2, 3, 4]


def test_urgent_waiters_go_first() -> None:
    assert queue_order(WriteQueue(), [False, False, True, True]) == [2, 3, 0, 1]


def test_urgent_waiters_do_not_starve_the_others() -> None:
    kinds = [False] + [True] * (URGENT_STREAK + 2)
    order = queue_order(WriteQueue(), kinds)
    assert order.index(0) == URGENT_STREAK


def test_a_timed_out_waiter_leaves_the_queue() -> None:
    queue = WriteQueue()
    queue.acquire(timeout=5)
    failed: list[Exception] = []

    def waiter() -> None:
        try:
            queue.acquire(timeout=0.01)
        except WriteQueueTimeout as exc:
            failed.append(exc)

    start(waiter).join(5)
    assert failed and queue.waiting == 0
    queue.release()
    assert not queue.held


def test_a_nested_write_on_one_thread_fails_at_once() -> None:
    queue = WriteQueue()
    queue.acquire(timeout=5)
    with pytest.raises(NestedWrite):
        queue.acquire(timeout=5)
    queue.release()


# ----- Database.transaction() on SQLite -----


@sqlite_only
def test_a_writer_waiting_behind_another_gets_the_lock_when_it_commits(db: Database) -> None:
    queue = write_queue(db.engine)
    assert queue is not None
    holding, done = threading.Event(), threading.Event()
    release = threading.Event()

    def first() -> None:
        with db.transaction() as session:
            session.execute(text("UPDATE counters SET value = value + 1"))
            holding.set()
            release.wait(5)

    def second() -> None:
        with db.transaction() as session:
            session.execute(text("UPDATE counters SET value = value + 10"))
        done.set()

    one = start(first)
    holding.wait(5)
    two = start(second)
    wait_until(lambda: queue.waiting == 1)
    assert not done.is_set()
    release.set()
    one.join(5)
    two.join(5)
    assert done.is_set() and not queue.held
    with db.transaction() as session:
        assert session.scalar(text("SELECT value FROM counters WHERE name = 'ticket_number'")) == 11


@sqlite_only
def test_the_intake_accept_goes_before_queued_worker_writes(db: Database) -> None:
    queue = write_queue(db.engine)
    assert queue is not None
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with db.transaction():
            holding.set()
            release.wait(5)

    def write(name: str, urgent: bool) -> None:
        with db.transaction(urgent=urgent) as session:
            session.execute(text("SELECT 1"))
            order.append(name)

    threads = [start(holder)]
    holding.wait(5)
    threads.append(start(lambda: write("worker", False)))
    wait_until(lambda: queue.waiting == 1)
    threads.append(start(lambda: write("intake", True)))
    wait_until(lambda: queue.waiting == 2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert order == ["intake", "worker"]


@sqlite_only
def test_the_lock_is_released_after_an_error_inside_the_transaction(db: Database) -> None:
    with pytest.raises(ValueError), db.transaction():
        raise ValueError("the action refused")
    assert not write_queue(db.engine).held  # type: ignore[union-attr]
    with db.transaction() as session:
        session.execute(text("SELECT 1"))


@sqlite_only
def test_the_lock_is_released_when_the_commit_fails(db: Database) -> None:
    with pytest.raises(Exception, match="FOREIGN KEY"), db.transaction() as session:
        # Checked at COMMIT, so the commit itself fails.
        session.execute(text("PRAGMA defer_foreign_keys=ON"))
        session.execute(
            text(
                "INSERT INTO messages (ticket_id, direction, visibility, source, author_name, "
                "body_markdown, created_at) VALUES (999, 'inbound', 'public', 'email', 'x', 'x', "
                "CURRENT_TIMESTAMP)"
            )
        )
    assert not write_queue(db.engine).held  # type: ignore[union-attr]
    with db.transaction() as session:
        assert session.scalar(text("SELECT count(*) FROM messages")) == 0


@sqlite_only
def test_the_lock_is_released_when_the_connection_is_invalidated(db: Database) -> None:
    with pytest.raises(StoreUnavailable), db.transaction() as session:
        # The driver's connection dies under the transaction: SQLAlchemy invalidates it.
        session.connection().connection.dbapi_connection.close()  # type: ignore[union-attr]
        session.execute(text("SELECT 1"))
    assert not write_queue(db.engine).held  # type: ignore[union-attr]
    with db.transaction() as session:
        session.execute(text("SELECT 1"))


@sqlite_only
def test_a_writer_that_never_gets_a_turn_is_told_the_store_is_unavailable(db: Database) -> None:
    db.write_wait_seconds = 0.01
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with db.transaction():
            holding.set()
            release.wait(5)

    thread = start(holder)
    holding.wait(5)
    try:
        with pytest.raises(StoreUnavailable), db.transaction():
            pass
    finally:
        release.set()
        thread.join(5)
