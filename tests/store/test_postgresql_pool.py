"""PostgreSQL's pool checks a connection for life only when it sat idle (store/postgresql.py).

Each test ends the server side of the pool's one connection, as a server restart or a dropped
idle connection would, and looks at what the next transaction meets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import psycopg
import pytest
from freezegun import freeze_time
from sqlalchemy import make_url, text

from store import postgresql
from store.db import Database, StoreUnavailable
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")


@pytest.fixture
def db() -> Iterator[Database]:
    assert POSTGRES_URL is not None
    database = Database(POSTGRES_URL)
    yield database
    database.dispose()


def backend_pid(db: Database) -> int:
    with db.transaction() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def end_backend(pid: int) -> None:
    """What a server restart does to one connection: its server process ends."""
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def test_an_idle_connection_that_died_is_replaced_before_use(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgresql, "IDLE_BEFORE_PING_SECONDS", 0.0)  # every checkout has sat idle
    first = backend_pid(db)
    end_backend(first)
    # The ping at checkout finds it dead: the pool opens a new one and the transaction never knows.
    second = backend_pid(db)
    assert second != first


def test_a_connection_used_a_moment_ago_is_not_pinged(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgresql, "IDLE_BEFORE_PING_SECONDS", 3600.0)  # every checkout is recent
    first = backend_pid(db)
    end_backend(first)
    # No round trip before the transaction: it meets the dead connection and fails as retryable,
    # and the pool starts over with new connections.
    with pytest.raises(StoreUnavailable):
        backend_pid(db)
    assert backend_pid(db) != first


def test_the_second_counts_from_the_connections_last_use_not_from_its_opening(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgresql, "IDLE_BEFORE_PING_SECONDS", 5.0)
    with freeze_time("2026-11-27 09:00:00") as clock:
        backend_pid(db)  # opened and used at 09:00:00
        clock.tick(10)
        used = backend_pid(db)  # idle 10 s: pinged, alive, used again at 09:00:10
        end_backend(used)
        # Returned just now: trusted, though it was opened 10 s ago.
        with pytest.raises(StoreUnavailable):
            backend_pid(db)


def test_a_failed_ping_drops_every_connection_of_the_pool(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two connections in the pool, both ended on the server side (what a restart does).
    with db.engine.connect() as first, db.engine.connect() as second:
        pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in (first, second)]
    for pid in pids:
        end_backend(pid)
    monkeypatch.setattr(postgresql, "IDLE_BEFORE_PING_SECONDS", 0.0)
    assert backend_pid(db) not in pids  # the ping found the first one dead
    # The other one is not pinged (used a moment ago), but the failed ping dropped it too.
    monkeypatch.setattr(postgresql, "IDLE_BEFORE_PING_SECONDS", 3600.0)
    assert backend_pid(db) not in pids


def test_a_connection_whose_server_vanished_is_given_up_by_the_kernel(db: Database) -> None:
    """Keepalive probes after 30 s of silence, unacknowledged data for at most 60 s: not the system's
    two hours and fifteen minutes, which would hold a database thread that long."""
    with db.transaction() as session:
        raw = session.connection().connection.dbapi_connection
        assert raw is not None
        sock = socket.socket(fileno=raw.pgconn.socket)
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000
        finally:
            sock.detach()  # the connection's own socket: not ours to close
