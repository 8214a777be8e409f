"""Which delivery workers are alive, so that each keeps its share of Slack's rate limits.

Slack limits posting per channel and per workspace, whichever process calls. Each worker paces its
own calls (`bot.delivery.rate_gate`), so N workers each pacing at Slack's full rate would together
post N times too fast and collect 429s. So each worker checks in every few seconds (a row of
`service_state`, `worker:<digest of its id>`) and counts the workers seen lately; its gate then
keeps a 1/N share of each limit. A worker that stops checks out; one that dies is forgotten once
its row is old.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from store.db import Database
from store.models import ServiceState, utcnow

PREFIX = "worker:"


def _key(worker_id: str) -> str:
    return PREFIX + hashlib.sha256(worker_id.encode()).hexdigest()[:32]


def check_in(
    db: Database,
    worker_id: str,
    *,
    seen_within: timedelta,
    forget_after: timedelta,
    now: datetime | None = None,
) -> int:
    """Say this worker is alive; how many workers (this one included) were seen within `seen_within`.

    Times are the database's (`now` only for tests): workers on machines whose clocks disagree
    still judge each other by one clock.
    """
    key = _key(worker_id)
    with db.transaction() as session:
        now = now or _database_now(session)
        seen = session.scalar(
            update(ServiceState)
            .where(ServiceState.key == key)
            .values(updated_at=now)
            .returning(ServiceState.key)
        )
        if seen is None:
            session.add(ServiceState(key=key, value={"worker": worker_id}, updated_at=now))
        session.execute(
            delete(ServiceState).where(
                ServiceState.key.startswith(PREFIX), ServiceState.updated_at < now - forget_after
            )
        )
        live = select(func.count()).where(
            ServiceState.key.startswith(PREFIX), ServiceState.updated_at >= now - seen_within
        )
        return max(1, int(session.scalar(live) or 0))


def _database_now(session: Session) -> datetime:
    if session.get_bind().dialect.name == "postgresql":
        found = session.scalar(select(func.now()))
        if isinstance(found, datetime):
            return found
    return utcnow()  # SQLite: one machine, one worker


def check_out(db: Database, worker_id: str) -> None:
    """This worker stops: the others take its share at their next check-in."""
    with db.transaction() as session:
        session.execute(delete(ServiceState).where(ServiceState.key == _key(worker_id)))
