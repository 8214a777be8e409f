"""The intake queue: input committed before it is acknowledged (SMTP 250, Slack's HTTP 200).

The edge stores the raw input under a dedupe key (Message-ID, Slack event_id) and answers; the
worker claims items and turns them into tickets, marking an item done in the same transaction as
its effects, so each item takes effect exactly once even if a worker dies halfway.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Insert, Select, Table, Update, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store import claiming
from store.actions.common import literal
from store.db import Database
from store.models import MAX_ROW_ID, InboundItem, InboundState, utcnow
from store.outbox import backoff_delay, enqueue_desk_notice
from store.wakeups import Topic, note, note_arrivals

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class InboundWork:
    id: int
    kind: str
    payload: dict[str, Any]
    raw: bytes | None
    attempts: int
    # When the edge stored it (answered Slack's 200, SMTP's 250): when the input arrived, however
    # long it then waited for a worker.
    received_at: datetime | None = None


@dataclass(frozen=True)
class Arrival:
    """One input from an edge, as it is stored: the raw bytes and envelope, under its dedupe key."""

    kind: str
    dedupe_key: str
    payload: dict[str, Any] | None = None
    raw: bytes | None = None
    lane: str | None = None


@functools.cache
def _accept_statement(dialect: str) -> Insert:
    """A Core insert (no object to track: about half the CPU of the ORM's unit of work) that skips
    a key stored before, so one duplicate does not undo the others stored with it."""
    table = cast(Table, InboundItem.__table__)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING tells a stored row from a skipped one on both engines (the driver reports no
    # rowcount for this statement on PostgreSQL).
    return insert(table).on_conflict_do_nothing(index_elements=[table.c.dedupe_key]).returning(table.c.id)


def accept(
    db: Database,
    kind: str,
    dedupe_key: str,
    *,
    payload: dict[str, Any] | None = None,
    raw: bytes | None = None,
    lane: str | None = None,
) -> bool:
    """Store an input durably. False when the same key was stored before (nothing changes)."""
    return accept_all(db, [Arrival(kind, dedupe_key, payload, raw, lane)])[0]


def accept_all(db: Database, arrivals: Sequence[Arrival]) -> list[bool]:
    """Store inputs durably, all in one transaction: one commit (one fsync) for the lot.

    For each, in order: False when its key was stored before, or earlier in the same list (nothing
    changes for it). If the transaction fails, none is stored and the error is raised."""
    received_at = utcnow()
    stored: list[bool] = []
    # Urgent: the senders wait for this commit (SMTP 250, Slack's HTTP 200).
    with db.transaction(urgent=True) as session:
        statement = _accept_statement(session.get_bind().dialect.name)
        for arrival in arrivals:
            # A key inserted earlier in this transaction conflicts like one committed before.
            result = session.execute(
                statement,
                {
                    "kind": arrival.kind,
                    "dedupe_key": arrival.dedupe_key[:1000],
                    "lane": arrival.lane,
                    "payload": arrival.payload or {},
                    "raw": arrival.raw,
                    "state": InboundState.PENDING,
                    "attempts": 0,
                    "received_at": received_at,
                },
            )
            stored.append(result.first() is not None)
        if any(stored):
            note_arrivals(session, sum(stored))
    return stored


def remember(db: Database, kind: str, dedupe_key: str) -> bool:
    """Record that a request was received, as a finished item no worker claims: False when its key
    was recorded before (a replay of the same request). For requests handled where they arrive."""
    now = utcnow()
    with db.transaction(urgent=True) as session:
        statement = _accept_statement(session.get_bind().dialect.name)
        values: dict[str, Any] = {
            "kind": kind,
            "dedupe_key": dedupe_key[:1000],
            "lane": None,
            "payload": {},
            "raw": None,
        }
        result = session.execute(
            statement,
            {**values, "state": InboundState.DONE, "attempts": 1, "received_at": now, "processed_at": now},
        )
        return result.first() is not None


def seen(db: Database, dedupe_key: str) -> bool:
    with db.read() as session:
        return (
            session.scalar(select(InboundItem.id).where(InboundItem.dedupe_key == dedupe_key[:1000]))
            is not None
        )


@functools.cache
def _claim_query(*, by_kind: bool, skip_locked: bool) -> Select[InboundItem]:
    """Built once per shape: see `store.claiming`. Due: pending and past its backoff, or claimed by
    a worker whose lease lapsed."""
    now = claiming.now_parameter(InboundItem.claimed_until)
    due = or_(
        and_(
            InboundItem.state == InboundState.PENDING,
            or_(InboundItem.not_before.is_(None), InboundItem.not_before <= now),
        ),
        and_(InboundItem.state == InboundState.CLAIMED, InboundItem.claimed_until < now),
    )
    return claiming.claim_statement(
        InboundItem,
        due=due,
        order_by=(InboundItem.id,),
        waiting=(InboundState.PENDING, InboundState.CLAIMED),
        by_kind=by_kind,
        skip_locked=skip_locked,
    )


def claim(
    db: Database,
    worker_id: str,
    *,
    limit: int = 20,
    lease: timedelta = timedelta(seconds=120),
    kinds: frozenset[str] | None = None,
) -> list[InboundWork]:
    """Claim up to `limit` due items, oldest first, whose lane has nothing earlier still waiting."""
    now = utcnow()
    query = _claim_query(by_kind=kinds is not None, skip_locked=db.is_postgresql)
    parameters = claiming.claim_parameters(now, limit, kinds)
    with db.transaction() as session:
        rows = claiming.take(
            session.connection(), InboundItem, query, parameters, worker_id=worker_id, until=now + lease
        )
        # Attempts as the claim counted them.
        return [
            InboundWork(row.id, row.kind, dict(row.payload), row.raw, row.attempts + 1, row.received_at)
            for row in rows
        ]


def finish(session: Session, item_id: int, worker_id: str) -> bool:
    """Mark an item done inside the transaction that applied it; False if another worker took it."""
    # On the connection: the item is never loaded as an object, and this runs once per ticket.
    result = session.connection().execute(
        _finished_statement(), {"item_id": item_id, "worker_id": worker_id, "at": utcnow()}
    )
    return bool(result.rowcount)


@functools.cache
def _finished_statement() -> Update:
    return (
        update(InboundItem)
        .where(
            InboundItem.id == bindparam("item_id"),
            InboundItem.claimed_by == bindparam("worker_id"),
            InboundItem.state == InboundState.CLAIMED,
        )
        .values(
            state=InboundState.DONE,
            processed_at=bindparam("at", type_=InboundItem.processed_at.type),
            claimed_until=None,
            raw=None,
        )
    )


def give_up_or_retry(db: Database, item_id: int, worker_id: str, error: str) -> str:
    """After a failure: retry later, or park the item as failed after MAX_ATTEMPTS (kept for operators)."""
    with db.transaction() as session:
        item = session.get(InboundItem, item_id)
        # Finished keeps `claimed_by`: an item whose handler committed must not be reopened.
        if item is None or item.state != InboundState.CLAIMED or item.claimed_by != worker_id:
            return "lost"
        item.last_error = error[:2000]
        item.claimed_until = None
        if item.attempts >= MAX_ATTEMPTS:
            item.state = InboundState.FAILED
            # Kept, not lost: the team hears of it where they work, with what brings it back.
            enqueue_desk_notice(session, _failed_notice(item))
            return InboundState.FAILED.value
        item.state = InboundState.PENDING
        # Backoff so a failing item (Slack briefly down for a lookup) is not retried in a tight loop;
        # its lane waits behind it, which keeps a channel's events in order.
        item.not_before = utcnow() + backoff_delay(item.attempts)
        note(session, Topic.INTAKE, item.not_before)
        return InboundState.PENDING.value


# What a failed intake item was, in the triage channel's words; the kinds not named are Slack's.
INTAKE_WORDS = {"email": "email"}
NOTICE_ERROR_CHARS = 200


def _failed_notice(item: InboundItem) -> str:
    what = INTAKE_WORDS.get(item.kind, "Slack request")
    sender = str((item.payload or {}).get("mail_from") or "")
    if item.kind == "email" and sender:
        what += f" from {literal(sender)}"
    error = (item.last_error or "unknown error").strip().splitlines()[0][:NOTICE_ERROR_CHARS]
    return (
        f":warning: An incoming {what} could not be turned into a ticket after {item.attempts} "
        f"attempts ({literal(error)}). It is kept: on the server, `servicedesk outbox` lists it and "
        f"`servicedesk outbox --retry-intake {item.id}` tries it again."
    )


def failed_count(db: Database) -> int:
    """How many intake items are parked as failed (for /healthz and the listing)."""
    with db.read() as session:
        return _failed_count(session)


def _failed_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(InboundItem).where(InboundItem.state == InboundState.FAILED)
        )
        or 0
    )


@dataclass(frozen=True)
class FailedItem:
    """What an operator sees of a failed intake item (its raw input stays in the store)."""

    id: int
    kind: str
    received_at: datetime
    attempts: int
    last_error: str | None


def failed_items(db: Database, limit: int) -> tuple[list[FailedItem], int]:
    """Intake items parked as failed, oldest first, and how many there are."""
    with db.read() as session:
        total = _failed_count(session)
        found = session.execute(
            select(
                InboundItem.id,
                InboundItem.kind,
                InboundItem.received_at,
                InboundItem.attempts,
                InboundItem.last_error,
            )
            .where(InboundItem.state == InboundState.FAILED)
            .order_by(InboundItem.id)
            .limit(min(limit, MAX_ROW_ID))
        ).all()
    return [FailedItem(*row) for row in found], total


@dataclass(frozen=True)
class RetryingItem:
    """An intake item that failed at least once and will be tried again by itself."""

    id: int
    kind: str
    state: str
    received_at: datetime
    attempts: int
    not_before: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class IntakeBacklog:
    """Accepted input not yet turned into tickets and not parked as failed: `waiting` counts all of
    it, `retrying` lists (up to a limit) those that already failed an attempt, `retrying_total` counts
    them."""

    waiting: int
    retrying: list[RetryingItem]
    retrying_total: int


def backlog(db: Database, limit: int) -> IntakeBacklog:
    """What the worker still has to turn into tickets, for `servicedesk outbox`: an empty outbox
    says nothing of mail that is accepted but whose ticket keeps failing to be built."""
    open_states = (InboundState.PENDING, InboundState.CLAIMED)
    erred = and_(InboundItem.state.in_(open_states), InboundItem.last_error.is_not(None))
    with db.read() as session:
        waiting = session.scalar(
            select(func.count()).select_from(InboundItem).where(InboundItem.state.in_(open_states))
        )
        retrying_total = session.scalar(select(func.count()).select_from(InboundItem).where(erred))
        found = session.execute(
            select(
                InboundItem.id,
                InboundItem.kind,
                InboundItem.state,
                InboundItem.received_at,
                InboundItem.attempts,
                InboundItem.not_before,
                InboundItem.last_error,
            )
            .where(erred)
            .order_by(InboundItem.id)
            .limit(min(limit, MAX_ROW_ID))
        ).all()
    return IntakeBacklog(int(waiting or 0), [RetryingItem(*row) for row in found], int(retrying_total or 0))


def item_state(db: Database, item_id: int) -> str | None:
    """The state of intake item `item_id`, None when there is no such item."""
    if not 1 <= item_id <= MAX_ROW_ID:
        return None
    with db.read() as session:
        return session.scalar(select(InboundItem.state).where(InboundItem.id == item_id))


def retry_failed_item(db: Database, item_id: int) -> bool:
    """Operator's retry of a failed intake item: due now, with its attempts counted afresh. False
    when there is no such failed item."""
    if not 1 <= item_id <= MAX_ROW_ID:
        return False
    with db.transaction() as session:
        item = session.get(InboundItem, item_id)
        if item is None or item.state != InboundState.FAILED:
            return False
        item.state = InboundState.PENDING
        item.attempts = 0
        item.not_before = None
        item.claimed_by = None
        note(session, Topic.INTAKE)
        return True


def holders(db: Database, prefix: str) -> list[str]:
    """The workers (ids starting with `prefix`) that hold items now: for reclaiming dead ones."""
    with db.read() as session:
        found = session.scalars(
            select(InboundItem.claimed_by)
            .where(
                InboundItem.state == InboundState.CLAIMED,
                InboundItem.claimed_by.startswith(prefix, autoescape=True),
            )
            .distinct()
        ).all()
    return [holder for holder in found if holder]


def release(db: Database, worker_id: str) -> int:
    """Give back every item `worker_id` holds: how many."""
    with db.transaction() as session:
        result = session.execute(
            update(InboundItem)
            .where(InboundItem.state == InboundState.CLAIMED, InboundItem.claimed_by == worker_id)
            .values(
                state=InboundState.PENDING,
                claimed_until=None,
                claimed_by=None,
                attempts=InboundItem.attempts - 1,
            )
        )
        released = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if released:
            note(session, Topic.INTAKE)
        return released
