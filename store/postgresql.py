"""PostgreSQL engine: a pool whose connections are checked for life only after they sat idle.

A pooled connection can be dead without knowing it: the server restarted, a proxy or firewall
dropped it while it sat idle. SQLAlchemy's `pool_pre_ping` finds that out with a round trip on
every checkout. The service checks out a connection for each transaction, about ten per ticket
under load, so that was half of every round trip to the server that did nothing (a `;` each).

Here a connection is pinged only when it comes back from at least `IDLE_BEFORE_PING_SECONDS` in
the pool (HikariCP's "alive bypass window" does the same, at 0.5 s). One used a moment ago was
answering a moment ago. If the server went away in that moment, a transaction that meets such a
connection fails as any transaction fails when the server goes away mid-way: StoreUnavailable
(retried, 451, or a 500 Slack retries). SQLAlchemy then drops every connection of the pool, and
so does a failed ping here (a dead connection most often means the server restarted), so the
transactions after it get new ones.

A new connection gives up after `CONNECT_TIMEOUT_SECONDS`: without a limit, a connect to a server
that takes the TCP connection and never answers (overloaded, a half-dead proxy) waits on (psycopg's
own fallback is 130 s), and with it the transaction, `/healthz` and the stop.

An open connection whose server vanished from the network (a host powered off, a partition) is
given up by the kernel after `TCP_KEEPALIVE`: probes after 30 s of silence, and data the server has
not acknowledged for 60 s. The system defaults (two hours of silence, about 15 minutes of
retransmissions) would hold a database thread, and what waits on it, that long.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import InvalidatePoolError

IDLE_BEFORE_PING_SECONDS = 1.0
# Far above a healthy connect (TCP, TLS, authentication: milliseconds, even across a network), and
# short enough that a connect to a server that does not answer fails (StoreUnavailable, retried) in
# time for `/healthz` to say so, and for a stop to give rows back (or fail to) after its 2.5 s of
# draining, within its 10 s. Whole seconds, at least 2 (psycopg's rule); a host name with two
# addresses (localhost: ::1 and 127.0.0.1) may take it twice.
CONNECT_TIMEOUT_SECONDS = 3
# libpq's names. Idle before the first probe, between probes, probes lost before the connection is
# dropped (30 + 3 × 10 s); and how long sent data may stay unacknowledged (ms). A long statement is
# not cut by these: the server's TCP stack answers the probes while it works.
TCP_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
POOL_SIZE = 10
MAX_OVERFLOW = 20
_RETURNED_AT = "servicedesk_returned_at"


def make_postgresql_engine(url: str, **kwargs: Any) -> Engine:
    connect_args = dict(kwargs.pop("connect_args", {}))
    given = make_url(url).query  # a value given in the URL is the operator's choice
    for name, value in {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **TCP_KEEPALIVE}.items():
        if name not in given:
            connect_args.setdefault(name, value)
    engine = create_engine(
        url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, connect_args=connect_args, **kwargs
    )
    ping = engine.dialect.do_ping
    driver_error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        # A new connection counts as just used: it has answered the whole handshake.
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is not None and time.monotonic() - returned_at < IDLE_BEFORE_PING_SECONDS:
            return
        try:
            ping(dbapi_connection)
        except driver_error as exc:
            # The pool drops this connection and every other it holds, and checks out a new one.
            raise InvalidatePoolError(f"a pooled connection did not answer: {exc}") from exc

    return engine
