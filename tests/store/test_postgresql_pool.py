"""PostgreSQL's pool checks a connection for life only when it sat idle (store/postgresql.py).

Each test ends the server side of the pool's one connection, as a server restart or a dropped
idle connection would, and looks at what the next transaction meets.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

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
    url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
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


def test_a_connection_used_a_moment_ago_is_not_pinged(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgresql, "IDLE_BEFORE_PING_SECONDS", 3600.0)  # every checkout is recent
    first = backend_pid(db)
    end_backend(first)
    # No round trip before the transaction: it meets the dead connection and fails as retryable,
    # and the pool starts over with new connections.
    with pytest.raises(StoreUnavailable):
        backend_pid(db)
    assert backend_pid(db) != first
