"""A PostgreSQL server that takes the TCP connection and never answers: a connect gives up after
store.postgresql.CONNECT_TIMEOUT_SECONDS and fails as StoreUnavailable (retried), where it waited
without limit before (psycopg's fallback: 130 s), and with it /healthz and the stop.

No PostgreSQL server is needed: the silent server stands in for one.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from store import postgresql
from store.db import Database, StoreUnavailable
from tests.faults.silent_server import WAIT_SECONDS, SilentServer


def test_a_connect_to_a_server_that_never_answers_fails_as_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgresql, "CONNECT_TIMEOUT_SECONDS", 2)  # psycopg's least
    with SilentServer() as server:
        db = Database(f"postgresql+psycopg://servicedesk@127.0.0.1:{server.port}/servicedesk")
        failures: list[BaseException] = []

        def transaction() -> None:
            try:
                with db.transaction() as session:
                    session.execute(text("SELECT 1"))
            except StoreUnavailable as exc:
                failures.append(exc)

        attempt = threading.Thread(target=transaction, daemon=True)
        attempt.start()
        server.accept()  # the connection is made; the server says nothing
        attempt.join(WAIT_SECONDS)
        try:
            assert not attempt.is_alive(), "the connect waited on"
            [failure] = failures
            assert "timeout" in str(failure)
            assert db.ping() is False  # /healthz: 503, "unreachable"
        finally:
            db.dispose()


def test_a_connect_timeout_in_the_url_is_kept() -> None:
    db = Database("postgresql+psycopg://servicedesk@127.0.0.1:1/servicedesk?connect_timeout=17")
    try:
        assert db.engine.dialect.create_connect_args(db.engine.url)[1]["connect_timeout"] == "17"
    finally:
        db.dispose()
