"""Engine, transactions and the named errors the adapters translate at their edge."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.sqlite import BUSY_TIMEOUT_SECONDS, make_sqlite_engine, write_queue
from store.write_queue import WriteQueueTimeout

log = logging.getLogger(__name__)


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the work; the caller should retry later."""


class NotFound(StoreError):
    """A ticket, customer or label the caller named does not exist."""


class InvalidRequest(StoreError):
    """The action's input is not acceptable; the message says why in plain words."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        return make_sqlite_engine(url, **kwargs)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


class Database:
    """The engine and session factory; every action runs inside `transaction()`."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite file: this process's writers take turns here before BEGIN IMMEDIATE.
        self._writes = write_queue(self.engine)
        self.write_wait_seconds: float = BUSY_TIMEOUT_SECONDS

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self, *, urgent: bool = False) -> Iterator[Session]:
        """One database transaction: committed when the block ends, rolled back on error.

        `urgent`: an edge answers once this commits (SMTP 250, Slack's HTTP 200); on SQLite it
        goes before the worker's queued writes.
        """
        with _translated():
            if self._writes is None:
                with self._sessions.begin() as session:
                    yield session
                return
            self._writes.acquire(urgent=urgent, timeout=self.write_wait_seconds)
            try:
                with self._sessions.begin() as session:
                    yield session
            finally:
                # After the commit or rollback, and whatever failed (the commit itself, a dropped
                # connection): the next writer must never wait for a lock nobody holds.
                self._writes.release()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError):
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _translated() -> Iterator[None]:
    """The store's errors for what the driver raised: unavailable means "retry later"."""
    try:
        yield
    except WriteQueueTimeout as exc:
        raise StoreUnavailable(f"database unavailable: {exc}") from exc
    except OperationalError as exc:
        raise StoreUnavailable(_describe(exc)) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(_describe(exc)) from exc
        raise


def _describe(exc: DBAPIError) -> str:
    first_line = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return f"database unavailable: {first_line}"
