"""How the store uses a SQLite file: a pool of configured connections, each still tied to its file.

Opening a connection runs four PRAGMAs and later loads the schema, about 0.8 ms each time, so
connections are pooled and configured once (in the connect hook). A pooled connection keeps its
file open even after the file is moved, deleted or replaced, which a new connection per
transaction never did. So the engine remembers the file it first opened (device and inode), and
every checkout checks that the path still names that file:

- moved away (or its folder): the store is unavailable, and connections opened meanwhile never
  create an empty database in its place (`mode=rw`); moved back, it works again;
- replaced (a backup restored over it while the service runs): the store stays unavailable until
  the service restarts. The old connections still hold the old `-wal` file, which a new connection
  at the path would pair with the restored file; restoring means stopping the service first.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import String

from store.deadline import time_left
from store.write_queue import WriteQueue

# Threads that hold a connection at once: asyncio's default executor (asyncio.to_thread, which
# the worker and the Slack adapters use) is min(32, CPUs + 4), the SMTP intake has its own three
# (mail.intake.INTAKE_THREADS), plus one spare. Kept connections past this are closed on return
# rather than refused (no overflow limit), so nothing ever waits for a pool slot.
POOL_SIZE = min(32, (os.cpu_count() or 1) + 4) + 4
BUSY_TIMEOUT_SECONDS = 30
BUSY_TIMEOUT_MS = BUSY_TIMEOUT_SECONDS * 1000
BUSY_TIMEOUT_KEY = "servicedesk_busy_timeout_ms"  # the connection's busy_timeout, in its pool record
# Set on the engine view Database.read() uses: its transactions begin deferred and query-only.
READ_ONLY_OPTION = "servicedesk_read_only"
REPLACED = "the database file {path} was replaced while the service ran; restart the service to use it"


def is_memory_url(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:")


def make_sqlite_engine(url: str, **kwargs: Any) -> Engine:
    memory = is_memory_url(url)
    pool_args: dict[str, Any] = (
        {}
        if memory
        else {
            "poolclass": QueuePool,
            "pool_size": POOL_SIZE,
            "max_overflow": -1,
        }
    )
    engine = create_engine(
        url,
        # Threads take turns with a connection (the pool hands it to one at a time).
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS},
        **pool_args,
        **kwargs,
    )
    path = None if memory else engine.url.database
    _configure(engine, os.path.abspath(path) if path else None)
    return engine


# SQLite's own lower() changes only A-Z: "MÜLLER" stays "mÜller", so a search for "müller" (lowered
# in Python) missed it, where PostgreSQL finds it. Each connection gets Python's lower() as this.
UNICODE_LOWER = "servicedesk_lower"


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class text_lower(GenericFunction[str]):  # a SQL function, named as func.lower is
    """lower() for text in any script, on either engine: for case-blind searches."""

    type = String()
    inherit_cache = True


@compiles(text_lower)
def _text_lower(element: text_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(text_lower, "sqlite")
def _text_lower_sqlite(element: text_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{UNICODE_LOWER}({compiler.process(element.clauses, **kw)})"


_queues: dict[str, WriteQueue] = {}
_queues_lock = threading.Lock()


def write_queue(engine: Engine) -> WriteQueue | None:
    """The process's queue for this file's write lock (shared by every Database on the file);
    None for in-memory SQLite, where each connection is a database of its own."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or is_memory_url(str(engine.url)):
        return None
    with _queues_lock:
        return _queues.setdefault(os.path.abspath(path), WriteQueue())


def leave_query_only(connection: Connection) -> None:
    """Make a connection that ran a read writable again; one that cannot be reset is dropped."""
    if connection.invalidated or connection.closed:
        return
    try:
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        # Straight to the driver: outside any transaction, in autocommit (isolation_level None).
        dbapi_connection.execute("PRAGMA query_only=OFF")
    except sqlite3.Error:
        connection.invalidate()  # never hand a query-only connection to a writer


def _file_id(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


@dataclass
class _FileTie:
    """The file an engine works on: its path and, once opened, its identity."""

    path: str | None
    opened: tuple[int, int] | None = None


def _bound_busy_wait(connection: Any) -> None:
    """BEGIN IMMEDIATE waits for another process's write lock under busy_timeout: within a time
    limit (store.deadline) for no longer than the time left. Set only when it changes."""
    left = time_left()
    wait_ms = BUSY_TIMEOUT_MS if left is None else max(1, min(BUSY_TIMEOUT_MS, int(left * 1000)))
    info = connection.connection.info
    if info.get(BUSY_TIMEOUT_KEY) != wait_ms:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={wait_ms}")
        info[BUSY_TIMEOUT_KEY] = wait_ms


def _configure(engine: Engine, path: str | None) -> None:
    tie = _FileTie(path)

    @event.listens_for(engine, "do_connect")
    def _do_connect(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        if tie.path is not None and tie.opened is not None:
            # Once the database exists, never create an empty one where it went missing.
            cargs[:] = [f"file:{quote(tie.path)}?mode=rw"]
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if tie.opened is not None and _file_id(tie.path) != tie.opened:
            dbapi_connection.close()
            raise sqlite3.OperationalError(REPLACED.format(path=tie.path))
        # Let SQLAlchemy's "begin" event emit BEGIN IMMEDIATE instead of pysqlite's deferred
        # BEGIN: a deferred transaction that later writes can fail with SQLITE_BUSY without
        # waiting, while IMMEDIATE waits for the write lock under busy_timeout.
        dbapi_connection.isolation_level = None
        dbapi_connection.create_function(UNICODE_LOWER, 1, _unicode_lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed ticket survives a power loss, since SMTP 250 promises exactly that.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()
        _record.info[BUSY_TIMEOUT_KEY] = BUSY_TIMEOUT_MS
        if tie.opened is None:
            tie.opened = _file_id(tie.path)  # after journal_mode, which has made sure the file exists

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if tie.opened is not None and _file_id(tie.path) != tie.opened:
            # The pool drops this connection and opens a new one, which fails while the file is
            # away (mode=rw) or replaced (the connect hook): the store is unavailable, not wrong.
            raise DisconnectionError("the database file is no longer the one this service opened")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            # A read takes no lock (in WAL mode readers run beside the writer), and a write in it
            # fails (SQLITE_READONLY) instead of taking the lock unnoticed. Database.read() turns
            # query_only off again before the connection goes back to the pool.
            connection.exec_driver_sql("PRAGMA query_only=ON")
            connection.exec_driver_sql("BEGIN")
        else:
            _bound_busy_wait(connection)
            connection.exec_driver_sql("BEGIN IMMEDIATE")
