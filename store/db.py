"""Engine, transactions and the named errors the adapters translate at their edge."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.deadline import time_left
from store.postgresql import make_postgresql_engine
from store.sqlite import (
    BUSY_TIMEOUT_SECONDS,
    READ_ONLY_OPTION,
    leave_query_only,
    make_sqlite_engine,
    write_queue,
)
from store.wakeups import Wakeups
from store.write_queue import WriteQueueTimeout

log = logging.getLogger(__name__)

# PostgreSQL's SQLSTATE for a write in a READ ONLY transaction (read_only_sql_transaction).
READ_ONLY_TRANSACTION = "25006"
# PostgreSQL's SQLSTATEs for a lock wait (lock_not_available) and a statement (query_canceled)
# cut off by the timeouts a time limit sets (store.deadline).
OUT_OF_TIME = frozenset({"55P03", "57014"})


def _time_left() -> float | None:
    left = time_left()
    if left is not None and left <= 0:
        raise StoreBusy("database busy: no time left to begin the work")
    return left


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the work; the caller should retry later."""


class StoreBusy(StoreUnavailable):
    """The work did not finish within its time limit (store.deadline) and was rolled back: nothing
    changed."""


class CommitUnknown(StoreUnavailable):
    """The connection went while the commit was on its way: the work may or may not be stored."""


class NotFound(StoreError):
    """A ticket, customer or label the caller named does not exist."""


class InvalidRequest(StoreError):
    """The action's input is not acceptable; the message says why in plain words."""


class WriteInReadOnly(RuntimeError):
    """Code inside `Database.read()` tried to write: a bug, so not a StoreError to be retried."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return make_sqlite_engine(url, **kwargs)
    if backend == "postgresql":
        return make_postgresql_engine(url, **kwargs)
    # Settings refuse such a URL at start (store.settings.check_database_url); this is a caller's bug.
    raise ValueError(f"the store runs on SQLite or PostgreSQL, not {backend}")


class Database:
    """The engine and session factory; every action runs inside `transaction()`."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite file: this process's writers take turns here before BEGIN IMMEDIATE.
        self._writes = write_queue(self.engine)
        self.write_wait_seconds: float = BUSY_TIMEOUT_SECONDS
        # Reads on the same pool: on file SQLite begun deferred and query-only; on PostgreSQL as
        # READ ONLY transactions (psycopg starts them so, no extra round trip). Either way a write
        # that slipped into a read fails in tests on both engines instead of passing on one.
        self._reader: Engine | None = None
        if self._writes is not None:
            self._reader = self.engine.execution_options(**{READ_ONLY_OPTION: True})
        elif self.is_postgresql:
            self._reader = self.engine.execution_options(postgresql_readonly=True)
        # Told after each commit that made work claimable (see store/wakeups.py): wakes the worker.
        self.wakeups = Wakeups(self._sessions)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self, *, urgent: bool = False) -> Iterator[Session]:
        """One database transaction: committed when the block ends, rolled back on error.

        `urgent`: an edge answers once this commits (SMTP 250, Slack's HTTP 200); on SQLite it
        goes before the worker's queued writes.
        """
        left = _time_left()
        with _translated(limited=left is not None):
            if self._writes is None:
                with self._session(left) as session:
                    yield session
                return
            wait = self.write_wait_seconds if left is None else min(self.write_wait_seconds, left)
            self._writes.acquire(urgent=urgent, timeout=wait)
            try:
                with self._session(None) as session:
                    yield session
            finally:
                # After the commit or rollback, and whatever failed (the commit itself, a dropped
                # connection): the next writer must never wait for a lock nobody holds.
                self._writes.release()

    @contextmanager
    def _session(self, left: float | None) -> Iterator[Session]:
        """A session in a transaction, committed after the block. A connection lost during the
        COMMIT itself raises CommitUnknown: the server may have carried it out."""
        with self._sessions() as session:
            session.begin()
            try:
                if left is not None:
                    _limit_statements(session, left)
                yield session
                session.flush()  # the last writes go now, while a failure still means "not stored"
            except BaseException:
                session.rollback()
                raise
            try:
                session.commit()
            except DBAPIError as exc:
                # The connection goes back to the pool outside any transaction (SQLite keeps one
                # open after a failed COMMIT, and the next BEGIN would fail on it).
                with contextlib.suppress(DBAPIError):
                    session.rollback()
                if exc.connection_invalidated:
                    raise CommitUnknown(_describe(exc, "database connection lost during the commit")) from exc
                raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A transaction that only reads; otherwise the same contract as `transaction()`.

        On SQLite it takes no write lock and does not wait in the writers' queue: it sees the
        last commit and runs beside the writer. On PostgreSQL it is a READ ONLY transaction. Writing
        in it raises WriteInReadOnly on both (in-memory SQLite, for tests: an ordinary transaction).
        """
        if self._reader is None:
            with self.transaction() as session:
                yield session
            return
        left = _time_left()
        with _translated(read_only=True, limited=left is not None), self._reader.connect() as connection:
            try:
                with Session(connection, expire_on_commit=False) as session, session.begin():
                    if left is not None:
                        _limit_statements(session, left)
                    yield session
            finally:
                if self._writes is not None:
                    leave_query_only(connection)  # PostgreSQL's flag is reset by the pool

    def ping(self) -> bool:
        # A read: under load a health check must not queue for the write lock. On SQLite the
        # pool's checkout finds a database file moved away (store.sqlite).
        try:
            with self.read() as session:
                session.execute(text("SELECT 1"))
        except (StoreUnavailable, DBAPIError):
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()


def _limit_statements(session: Session, left: float) -> None:
    """On PostgreSQL: no lock wait and no statement past the time left (for this transaction only).
    SQLite's only wait is for the write turn, bounded before the transaction begins."""
    if session.get_bind().dialect.name != "postgresql":
        return
    limit = f"{max(1, int(left * 1000))}ms"
    session.execute(
        text(
            "SELECT set_config('lock_timeout', :limit, true), set_config('statement_timeout', :limit, true)"
        ),
        {"limit": limit},
    )


@contextmanager
def _translated(*, read_only: bool = False, limited: bool = False) -> Iterator[None]:
    """The store's errors for what the driver raised: unavailable means "retry later"."""
    try:
        yield
    except WriteQueueTimeout as exc:
        if limited:
            raise StoreBusy(f"database busy: {exc}") from exc
        raise StoreUnavailable(f"database unavailable: {exc}") from exc
    except OperationalError as exc:
        if read_only and getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY:
            raise WriteInReadOnly(f"a write inside Database.read(): {exc.orig}") from exc
        out_of_time = getattr(exc.orig, "sqlstate", None) in OUT_OF_TIME or (
            getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
        )
        if limited and out_of_time:
            raise StoreBusy(_describe(exc, "database busy")) from exc
        raise StoreUnavailable(_describe(exc)) from exc
    except DBAPIError as exc:
        if read_only and getattr(exc.orig, "sqlstate", None) == READ_ONLY_TRANSACTION:
            raise WriteInReadOnly(f"a write inside Database.read(): {exc.orig}") from exc
        if exc.connection_invalidated:
            raise StoreUnavailable(_describe(exc)) from exc
        raise


def _describe(exc: DBAPIError, what: str = "database unavailable") -> str:
    first_line = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return f"{what}: {first_line}"
