"""The outbox: what must be delivered, written by actions, claimed and settled by workers.

A row is claimed under a lease (`claimed_until`): a worker that dies simply lets it lapse and
another worker takes the row again. Rows that share a `lane` (the posts of one Slack thread) are
performed strictly in id order; everything else flows independently. On PostgreSQL the claim
uses `FOR UPDATE SKIP LOCKED`, so any number of workers can drain one table.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import random
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, Update, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from store import claiming
from store.db import Database
from store.models import MAX_ROW_ID, EmailId, Outbox, OutboxState, Ticket, utcnow
from store.wakeups import Topic, note


class Kind(enum.StrEnum):
    """What a row asks for; the worker has one performer per kind."""

    CARD = "slack.card"  # post or update the ticket's card in the triage channel
    THREAD_POST = "slack.thread_post"  # a customer message (or /desk note) into the triage thread
    THREAD_LINE = "slack.thread_line"  # a short line from the desk in the triage thread
    ORIGIN_ACK = "slack.origin_ack"  # "Ticket #42 opened" in the customer's Slack thread
    ORIGIN_POST = "slack.origin_post"  # a staff reply into the customer's Slack thread
    ORIGIN_LINE = "slack.origin_line"  # a status notice in the customer's Slack thread
    MIRROR_UPDATE = "slack.mirror_update"  # an edit mirrored onto the copy we posted
    MIRROR_DELETE = "slack.mirror_delete"  # a deletion mirrored onto the copy we posted
    REACTION = "slack.reaction"  # receipts and the note marker
    DESK_NOTICE = "slack.desk_notice"  # a top-level line in the triage channel: intake that failed
    # A Slack customer stored under their id while Slack could not say who they are: asked again.
    PROFILE = "slack.profile"
    EMAIL = "email.send"  # one email to one recipient


SLACK_KINDS = frozenset(kind for kind in Kind if kind.value.startswith("slack."))

# In a delivered email row's result: the reply's files the customer got only as links ("linked",
# too large to attach) or by name ("missing" from the file store), for the staff's thread line.
FILES_NOT_ATTACHED = "files_not_attached"

# How long a delivery keeps trying before it fails for good and the thread is told.
DEFAULT_DEADLINE = timedelta(days=2)
# A triage-thread post whose ticket's card Slack refused has no thread to go in: it waits (this
# error, retried every minute until its deadline) rather than failing with the card, and an
# operator's retry of the card makes it due again at once.
WAITING_FOR_CARD = "waiting for the ticket's card, which Slack refused (servicedesk outbox --retry it)"
WAITING_FOR_CARD_RECHECK = timedelta(minutes=1)
# A new ticket's card the triage channel refuses as a channel (archived, not found, the app
# removed): kept with this error, not failed, so the ticket shows once the channel is fixed;
# /healthz says so while any waits. Rechecked more slowly the longer it has waited.
TRIAGE_UNREACHABLE = "the triage channel cannot take the ticket's card"
# The same for a post into an existing ticket's thread (a customer's message, a note, a line) or an
# edit of its card: kept until the channel is fixed, in its thread's order.
TRIAGE_UNREACHABLE_POST = "the triage channel cannot take this post"
TRIAGE_RECHECK_MIN = timedelta(seconds=5)
TRIAGE_RECHECK_MAX = timedelta(minutes=5)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 600.0


def triage_lane(ticket_id: int) -> str:
    return f"triage:{ticket_id}"


# The desk's own lines in the triage channel (no ticket's thread), in the order they were written.
DESK_NOTICE_LANE = "triage:desk"


# The deliveries of a reply to its customers, which its receipt and the undo window are about.
REPLY_DELIVERIES = (Kind.EMAIL.value, Kind.ORIGIN_POST.value)


def posted_parts(result: dict[str, Any]) -> list[str]:
    """The ts of every part a done post row posted, in order (a long message is several posts);
    a row from before parts were recorded names its one post as "ts"."""
    numbered = sorted((int(key[3:]), str(ts)) for key, ts in result.items() if key.startswith("ts:"))
    if numbered:
        return [ts for _part, ts in numbered]
    return [str(result["ts"])] if result.get("ts") else []


# A row's result records each batch of files it shared as {"shared:<batch>": {attachment id: file id}}.
SHARED_FILES_PREFIX = "shared:"


def shared_files(result: dict[str, Any]) -> list[str]:
    """The Slack file ids a done post row shared, in the order it shared them."""
    batches = sorted(
        (int(key.removeprefix(SHARED_FILES_PREFIX)), ids)
        for key, ids in result.items()
        if key.startswith(SHARED_FILES_PREFIX) and isinstance(ids, dict)
    )
    return [str(file_id) for _batch, ids in batches for file_id in ids.values()]


def card_lane(ticket_id: int) -> str:
    return f"card:{ticket_id}"


def mirror_lane(message_id: int, thread_ticket_id: int | None = None) -> str:
    """The edits and deletions carried over to one copy of a message, in the order they were made.

    Not the lane of the thread the copy is in: a copy exists before its mirror rows are written, so
    nothing there has to wait for them, and a `chat.update` held back by Slack (a 429 on that
    method, or its pace) must not hold back the thread's next posts, another method. A staff
    reply has a copy in each customer thread it went to (`thread_ticket_id`); a customer's
    message one, in the triage thread."""
    if thread_ticket_id is None:
        return f"mirror:{message_id}"
    return f"mirror:{message_id}:{thread_ticket_id}"


def receipt_lane(message_id: int) -> str:
    return f"receipt:{message_id}"


def origin_lane(ticket_id: int) -> str:
    return f"origin:{ticket_id}"


def mail_lane(ticket_id: int, address: str) -> str:
    """One ticket's mail to one person, in the order it was written: a "closed" notice typed right
    after the answer waits for the answer, which waits out its undo window."""
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:32]
    return f"mail:{ticket_id}:{digest}"


@dataclass(frozen=True)
class OutboxItem:
    """A claimed row, detached from any session."""

    id: int
    kind: str
    ticket_id: int | None
    message_id: int | None
    lane: str | None
    payload: dict[str, Any]
    attempts: int
    result: dict[str, Any] = field(default_factory=dict)
    deadline_at: datetime | None = None
    created_at: datetime | None = None
    ticket_number: int | None = None  # for logs: operators know tickets by number
    claimed_by: str = ""  # the worker holding it: progress is recorded under this claim


def enqueue(
    session: Session,
    kind: Kind,
    *,
    ticket_id: int | None = None,
    message_id: int | None = None,
    lane: str | None = None,
    payload: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    due_at: datetime | None = None,
    deadline: timedelta = DEFAULT_DEADLINE,
) -> Outbox:
    now = utcnow()
    row = Outbox(
        kind=kind.value,
        ticket_id=ticket_id,
        message_id=message_id,
        lane=lane,
        payload=payload or {},
        dedupe_key=dedupe_key,
        state=OutboxState.PENDING,
        attempts=0,
        next_attempt_at=due_at or now,
        deadline_at=(due_at or now) + deadline,
        result={},
        created_at=now,
    )
    session.add(row)
    note(session, Topic.OUTBOX, due_at)
    return row


def enqueue_once(session: Session, kind: Kind, *, ticket_id: int, **kwargs: Any) -> None:
    """Enqueue unless an unclaimed row of this kind already waits for the ticket.

    Used for card updates: the performer reads the ticket as it is when it runs, so one waiting
    row covers any number of changes made before it runs.

    The waiting row is locked until this transaction ends. Without the lock, on PostgreSQL a worker
    could claim it and read the ticket between this check and this commit: the change would never
    reach the card. With it, a claim passes the row over (`SKIP LOCKED`) until the change is
    committed. A row someone else holds (a claim taking it, another change relying on it) is
    passed over here too, and a row of this change's own is enqueued: never waiting for a lock
    means two changes to two tickets cannot deadlock on each other's card rows (a link between
    them updates both cards). On SQLite writers take turns, so none of this can interleave.
    """
    waiting = session.scalar(
        select(Outbox.id)
        .where(
            Outbox.kind == kind.value,
            Outbox.ticket_id == ticket_id,
            Outbox.state == OutboxState.PENDING,
        )
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if waiting is None:
        enqueue(session, kind, ticket_id=ticket_id, **kwargs)
    else:
        # A claim may have passed it over while it was locked: claim again after this commit.
        note(session, Topic.OUTBOX)


def lock_deliveries(session: Session, message_id: int) -> list[tuple[str, dict[str, Any] | None]]:
    """The state and result of each delivery of a reply that is waiting, being sent or done, locked.

    Until this transaction ends no claim can take one (PostgreSQL's claim skips locked rows; on
    SQLite the transaction holds the write lock). Nothing is flushed first: a pending change to the
    message must not lock the message's row before these (a worker settling a row locks the row,
    then the ticket, then the message: `lock_message`).
    """
    with session.no_autoflush:
        rows = session.execute(
            select(Outbox.state, Outbox.result)
            .where(
                Outbox.message_id == message_id,
                Outbox.kind.in_(REPLY_DELIVERIES),
                Outbox.state.in_([OutboxState.PENDING, OutboxState.CLAIMED, OutboxState.DONE]),
            )
            .with_for_update()
        ).all()
    return [(state, result) for state, result in rows]


def delivery_started(session: Session, message_id: int) -> bool:
    """Whether a reply has gone to a customer already, or a worker holds one of its deliveries now.

    Its deliveries are locked as they are read (`lock_deliveries`), so "no" stays true for a cancel
    that follows in the same transaction."""
    rows = lock_deliveries(session, message_id)
    return any(
        state == OutboxState.CLAIMED or (state == OutboxState.DONE and "skipped" not in (result or {}))
        for state, result in rows
    )


def forget_sent_ids(session: Session, headers: list[str]) -> None:
    """Forget Message-IDs recorded for mail that never left (cancelled, or skipped by the worker)."""
    if headers:
        session.execute(delete(EmailId).where(EmailId.message_id.in_(headers), EmailId.direction == "sent"))


def cancel_for_message(session: Session, message_id: int) -> int:
    """Cancel the waiting deliveries of a message (a reply deleted or made a note in time).

    A cancelled email never leaves, so its Message-ID is forgotten with it: kept, it would be the
    parent (In-Reply-To) or an ancestor (References) of the customer's next mail from the desk,
    naming a message they never had (`store.actions.common.MailThread`)."""
    never_sent = [
        str(payload.get("message_id_header"))
        for payload in session.scalars(
            select(Outbox.payload).where(
                Outbox.message_id == message_id,
                Outbox.state == OutboxState.PENDING,
                Outbox.kind == Kind.EMAIL.value,
            )
        )
        if isinstance(payload, dict) and payload.get("message_id_header")
    ]
    forget_sent_ids(session, never_sent)
    result = session.execute(
        update(Outbox)
        .where(Outbox.message_id == message_id, Outbox.state == OutboxState.PENDING)
        .where(Outbox.kind.in_(REPLY_DELIVERIES))
        .values(state=OutboxState.CANCELLED, done_at=utcnow())
    )
    cancelled = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if cancelled:
        # A cancelled row held its lane's next rows back (a later reply into the customer's thread).
        note(session, Topic.OUTBOX)
    return cancelled


@functools.cache
def _claim_query(*, by_kind: bool, skip_locked: bool) -> Select[Outbox]:
    """Built once per shape: see `store.claiming`. Due: pending and its time has come, or claimed
    by a worker whose lease lapsed."""
    now = claiming.now_parameter(Outbox.next_attempt_at)
    due = or_(
        and_(Outbox.state == OutboxState.PENDING, Outbox.next_attempt_at <= now),
        and_(Outbox.state == OutboxState.CLAIMED, Outbox.claimed_until < now),
    )
    return claiming.claim_statement(
        Outbox,
        due=due,
        order_by=(Outbox.next_attempt_at, Outbox.id),
        waiting=(OutboxState.PENDING, OutboxState.CLAIMED),
        by_kind=by_kind,
        skip_locked=skip_locked,
    )


def claim_due(
    db: Database,
    worker_id: str,
    *,
    limit: int = 50,
    lease: timedelta = timedelta(seconds=120),
    kinds: frozenset[str] | None = None,
) -> list[OutboxItem]:
    """Claim up to `limit` due rows whose lane has nothing earlier still waiting."""
    now = utcnow()
    query = _claim_query(by_kind=kinds is not None, skip_locked=db.is_postgresql)
    parameters = claiming.claim_parameters(now, limit, kinds)
    with db.transaction() as session:
        connection = session.connection()
        rows = claiming.take(connection, Outbox, query, parameters, worker_id=worker_id, until=now + lease)
        if not rows:
            return []
        ticket_ids = {row.ticket_id for row in rows if row.ticket_id is not None}
        numbers: dict[int, int] = {}
        if ticket_ids:
            found = connection.execute(_numbers_query(), {"ticket_ids": sorted(ticket_ids)})
            numbers = {ticket_id: number for ticket_id, number in found}
        return [
            OutboxItem(
                id=row.id,
                kind=row.kind,
                ticket_id=row.ticket_id,
                message_id=row.message_id,
                lane=row.lane,
                payload=dict(row.payload),
                attempts=row.attempts + 1,  # as the claim counted it
                result=dict(row.result or {}),
                deadline_at=row.deadline_at,
                created_at=row.created_at,
                ticket_number=numbers.get(row.ticket_id) if row.ticket_id is not None else None,
                claimed_by=worker_id,
            )
            for row in rows
        ]


@functools.cache
def _numbers_query() -> Select[int, int]:
    """The claimed rows' ticket numbers, for the worker's log lines."""
    return select(Ticket.id, Ticket.number).where(Ticket.id.in_(bindparam("ticket_ids", expanding=True)))


def _mine(session: Session, row_id: int, worker_id: str) -> Outbox | None:
    """The row, if this worker still holds it (its lease may have passed to another worker)."""
    row = session.get(Outbox, row_id, with_for_update=True)
    if row is None or row.state != OutboxState.CLAIMED or row.claimed_by != worker_id:
        return None
    return row


def recorded_by(session: Session, row_id: int, worker_id: str) -> bool:
    """Whether this worker already recorded the attempt's outcome (done, failed, or put back for a
    retry: each keeps `claimed_by`, which only a release or another claim changes): a settle repeated
    once the database is back, after an outage swallowed the answer to the first one's commit."""
    row = session.get(Outbox, row_id)
    return row is not None and row.claimed_by == worker_id and row.state != OutboxState.CLAIMED


def record_progress(db: Database, row_id: int, worker_id: str, result: dict[str, Any]) -> bool:
    """Keep what a delivery produced so far (a ts, a file id) before the next risky step.

    False when the row is no longer this worker's (its lease passed to another): stop there.
    """
    with db.transaction() as session:
        row = _mine(session, row_id, worker_id)
        if row is None:
            return False
        row.result = {**(row.result or {}), **result}
        return True


def extend_leases(db: Database, worker_id: str, row_ids: list[int], lease: timedelta) -> int:
    """Keep the rows this worker is still performing from lapsing to another worker."""
    if not row_ids:
        return 0
    with db.transaction() as session:
        result = session.execute(
            update(Outbox)
            .where(
                Outbox.id.in_(row_ids),
                Outbox.state == OutboxState.CLAIMED,
                Outbox.claimed_by == worker_id,
            )
            .values(claimed_until=utcnow() + lease)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def mark_done(session: Session, row_id: int, worker_id: str, result: dict[str, Any] | None = None) -> bool:
    # Every delivery ends here: two Core statements built once, on the connection (the ORM's
    # execute path, and loading the row as an object, cost more than the statements themselves).
    connection = session.connection()
    held = connection.execute(_held_query(), {"row_id": row_id, "worker_id": worker_id}).first()
    if held is None:
        return False
    lane, kept = held
    merged = {**(kept or {}), **(result or {})}
    connection.execute(_done_statement(), {"row_id": row_id, "at": utcnow(), "merged": merged})
    _lane_moves_on(session, lane, row_id)
    return True


@functools.cache
def _held_query() -> Select[str | None, dict[str, Any]]:
    """`_mine` without loading the row: its lane and result, locked, if this worker holds it."""
    return (
        select(Outbox.lane, Outbox.result)
        .where(
            Outbox.id == bindparam("row_id"),
            Outbox.state == OutboxState.CLAIMED,
            Outbox.claimed_by == bindparam("worker_id"),
        )
        .with_for_update()
    )


@functools.cache
def _done_statement() -> Update:
    return (
        update(Outbox)
        .where(Outbox.id == bindparam("row_id"))
        .values(
            state=OutboxState.DONE,
            done_at=bindparam("at"),
            claimed_until=None,
            last_error=None,
            result=bindparam("merged", type_=Outbox.result.type),
        )
    )


@functools.cache
def _lane_successor_query() -> Select[datetime]:
    """Built once (as the claim is): the due time of the next row waiting in a lane."""
    return (
        select(Outbox.next_attempt_at)
        .where(
            Outbox.lane == bindparam("lane"),
            Outbox.state == OutboxState.PENDING,
            Outbox.id > bindparam("after"),
        )
        .order_by(Outbox.id)
        .limit(1)
    )


def _lane_moves_on(session: Session, lane: str | None, row_id: int) -> None:
    """The row left its lane for good (done or failed): the lane's next row, held back by it until
    now, becomes claimable. Telling this process's worker (`note`) gets it claimed at once; without
    it, only a later refill or the poll would find it."""
    if lane is None:
        return
    due = session.connection().scalar(_lane_successor_query(), {"lane": lane, "after": row_id})
    if due is not None:
        note(session, Topic.OUTBOX, due)


def backoff_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff, each wait jittered between half and the whole step so that rows failed
    together do not come back together."""
    step = min(BACKOFF_BASE_SECONDS * (2 ** max(attempts - 1, 0)), BACKOFF_CAP_SECONDS)
    jitter = (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=step * jitter)


def schedule_retry(
    session: Session,
    row_id: int,
    worker_id: str,
    error: str,
    *,
    delay: timedelta | None = None,
    count_attempt: bool = True,
    at_least: timedelta | None = None,
) -> str:
    """Put the row back for later; returns the new state ("pending", or "failed" past its deadline).

    `at_least`: the backoff is added to it (never shortened below it, even by the deadline)."""
    row = _mine(session, row_id, worker_id)
    if row is None:
        return "lost"
    now = utcnow()
    if not count_attempt:
        row.attempts = max(row.attempts - 1, 0)
    wait = delay if delay is not None else backoff_delay(row.attempts)
    if at_least is not None:
        wait += at_least
    row.last_error = error[:2000]
    row.claimed_until = None
    if row.deadline_at is not None and count_attempt:
        if now >= row.deadline_at:
            row.state = OutboxState.FAILED
            row.done_at = now
            _lane_moves_on(session, row.lane, row.id)
            return OutboxState.FAILED.value
        # One last try at the deadline rather than giving up before it.
        wait = min(wait, row.deadline_at - now)
    if at_least is not None:
        # After a timeout: the call's late effect must have landed before the next attempt looks
        # for it (bot.delivery.calls), or it would find nothing and post a second copy.
        wait = max(wait, at_least)
    row.state = OutboxState.PENDING
    row.next_attempt_at = now + wait
    note(session, Topic.OUTBOX, row.next_attempt_at)
    return OutboxState.PENDING.value


def mark_failed(session: Session, row_id: int, worker_id: str, error: str) -> bool:
    row = _mine(session, row_id, worker_id)
    if row is None:
        return False
    row.state = OutboxState.FAILED
    row.last_error = error[:2000]
    row.done_at = utcnow()
    row.claimed_until = None
    _lane_moves_on(session, row.lane, row.id)
    return True


def release(
    db: Database,
    worker_id: str,
    *,
    untouched: bool = False,
    keep: Collection[int] = (),
    slack_settles_in: timedelta = timedelta(0),
    rng: random.Random | None = None,
) -> int:
    """Give back every row `worker_id` holds but those in `keep` (on shutdown, a dead worker's, or
    a claim whose answer a database outage swallowed).

    The attempt stays counted unless the caller knows nothing was sent (`untouched`): a row given
    back mid-call has an unknown outcome, and its next attempt must look for what it did. A Slack
    call cut off mid-way may still take effect after that look (Slack carries out a request it
    received however the connection ends), which would find nothing and post a second copy: such
    rows are due no sooner than `slack_settles_in` from now, each with its own jitter on top (up to
    a quarter as long again), so that a stop in the middle of a burst does not bring every row back in
    the same instant. Mail is due at once: a message the relay took is a resend under the same
    Message-ID, which the design accepts.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "state": OutboxState.PENDING,
        "claimed_until": None,
        "claimed_by": None,
        "next_attempt_at": now,
    }
    if untouched:
        values["attempts"] = Outbox.attempts - 1
    held = and_(
        Outbox.state == OutboxState.CLAIMED,
        Outbox.claimed_by == worker_id,
        Outbox.id.not_in(list(keep)),
    )
    with db.transaction() as session:
        settling: list[int] = []
        if slack_settles_in > timedelta(0):
            settling = list(
                session.scalars(
                    select(Outbox.id).where(held, Outbox.kind.in_(sorted(SLACK_KINDS))).with_for_update()
                )
            )
        result = session.execute(update(Outbox).where(held).values(**values))
        released = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if settling:
            jitter = rng or random
            session.execute(
                update(Outbox),
                [
                    {"id": row_id, "next_attempt_at": now + slack_settles_in * jitter.uniform(1.0, 1.25)}
                    for row_id in settling
                ],
            )
        if released:  # a stop with nothing held wakes nobody
            note(session, Topic.OUTBOX)
        return released


def holders(db: Database, prefix: str) -> list[str]:
    """The workers (ids starting with `prefix`) that hold rows now: for reclaiming dead ones."""
    with db.read() as session:
        found = session.scalars(
            select(Outbox.claimed_by)
            .where(Outbox.state == OutboxState.CLAIMED, Outbox.claimed_by.startswith(prefix, autoescape=True))
            .distinct()
        ).all()
    return [holder for holder in found if holder]


def retry_failed(db: Database, row_id: int) -> bool:
    """Operator's retry of a failed row: due now, with a fresh deadline. False when there is no
    such failed row (an ID no row can have, too: past the database's integers, it is not looked up)."""
    if not 1 <= row_id <= MAX_ROW_ID:
        return False
    with db.transaction() as session:
        row = session.get(Outbox, row_id)
        if row is None or row.state != OutboxState.FAILED:
            return False
        now = utcnow()
        row.state = OutboxState.PENDING
        row.next_attempt_at = now
        row.deadline_at = now + DEFAULT_DEADLINE
        row.done_at = None
        if row.kind == Kind.CARD and row.lane is not None:
            # The thread's posts waiting for this card go right after it, not at their next recheck.
            session.execute(
                update(Outbox)
                .where(
                    Outbox.lane == row.lane,
                    Outbox.id > row.id,
                    Outbox.state == OutboxState.PENDING,
                    Outbox.last_error == WAITING_FOR_CARD,
                )
                .values(next_attempt_at=now)
            )
        note(session, Topic.OUTBOX)
        return True


def row_state(db: Database, row_id: int) -> str | None:
    """The state of outbox row `row_id`, None when there is no such row: what an operator is told
    when a retry is refused."""
    if not 1 <= row_id <= MAX_ROW_ID:
        return None
    with db.read() as session:
        return session.scalar(select(Outbox.state).where(Outbox.id == row_id))


def oldest_due_age(db: Database) -> float | None:
    """Seconds the oldest due, undelivered row has waited; None when nothing is due."""
    now = utcnow()
    with db.read() as session:
        oldest = session.scalar(
            select(func.min(Outbox.next_attempt_at)).where(
                Outbox.state.in_([OutboxState.PENDING, OutboxState.CLAIMED]), Outbox.next_attempt_at <= now
            )
        )
    if oldest is None:
        return None
    # MIN keeps the column's type (UTCDateTime), so the value comes back aware on every engine.
    return max((now - oldest).total_seconds(), 0.0)


@dataclass(frozen=True)
class TriageWaiting:
    """What waits because the triage channel refuses posts (archived, gone, the app removed)."""

    cards: int  # new tickets without a card: invisible to staff until it goes up
    posts: int  # posts into existing tickets' threads, and edits of their cards
    reason: str | None  # the latest refusal, as the row records it

    @property
    def total(self) -> int:
        return self.cards + self.posts

    def said(self) -> str:
        """In plain words, for /healthz and `servicedesk check`."""
        parts = []
        if self.cards:
            parts.append(f"{self.cards} new ticket(s) wait for a card")
        if self.posts:
            parts.append(f"{self.posts} post(s) wait for the channel")
        return f"{', '.join(parts)}; {self.reason}"


def waiting_for_triage(db: Database) -> TriageWaiting:
    """How many new tickets' cards, and how many other posts, wait because the triage channel
    refuses them, and the latest reason (for /healthz and `servicedesk check`)."""
    waiting = and_(
        Outbox.state.in_([OutboxState.PENDING, OutboxState.CLAIMED]),
        or_(
            Outbox.last_error.startswith(TRIAGE_UNREACHABLE, autoescape=True),
            Outbox.last_error.startswith(TRIAGE_UNREACHABLE_POST, autoescape=True),
        ),
    )
    with db.read() as session:
        card = Outbox.last_error.startswith(TRIAGE_UNREACHABLE, autoescape=True)
        cards = int(session.scalar(select(func.count()).select_from(Outbox).where(waiting, card)) or 0)
        # The posts refused, and those queued behind them in their threads (not tried yet).
        held_lanes = select(Outbox.lane).where(waiting, Outbox.lane.is_not(None))
        queued = or_(
            waiting,
            and_(Outbox.state == OutboxState.PENDING, Outbox.lane.in_(held_lanes)),
        )
        total = int(session.scalar(select(func.count()).select_from(Outbox).where(queued)) or 0)
        if not total:
            return TriageWaiting(0, 0, None)
        reason = session.scalar(select(Outbox.last_error).where(waiting).order_by(Outbox.id.desc()).limit(1))
    return TriageWaiting(cards, total - cards, reason)


@dataclass(frozen=True)
class OutboxRow:
    """One row as `servicedesk outbox` shows it."""

    id: int
    kind: str
    state: str
    ticket_number: int | None
    attempts: int
    next_attempt_at: datetime | None
    deadline_at: datetime | None
    last_error: str | None


def undelivered(db: Database, limit: int = 50) -> tuple[list[OutboxRow], dict[str, int]]:
    """Failed rows first (they need a person), then pending and claimed ones by due time; and the
    count of rows in each of those states."""
    limit = min(limit, MAX_ROW_ID)  # "all": a larger LIMIT overflows the database's integers
    open_states = [OutboxState.FAILED, OutboxState.PENDING, OutboxState.CLAIMED]
    failed_first = (Outbox.state != OutboxState.FAILED).asc()
    with db.read() as session:
        counted = session.execute(
            select(Outbox.state, func.count()).where(Outbox.state.in_(open_states)).group_by(Outbox.state)
        )
        counts = {state: count for state, count in counted}
        found = session.execute(
            select(Outbox, Ticket.number)
            .outerjoin(Ticket, Ticket.id == Outbox.ticket_id)
            .where(Outbox.state.in_(open_states))
            .order_by(failed_first, Outbox.next_attempt_at, Outbox.id)
            .limit(limit)
        ).all()
        rows = [
            OutboxRow(
                id=row.id,
                kind=row.kind,
                state=row.state,
                ticket_number=number,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
                deadline_at=row.deadline_at,
                last_error=row.last_error,
            )
            for row, number in found
        ]
    return rows, {str(state): int(count) for state, count in counts.items()}


def enqueue_desk_notice(session: Session, text: str) -> None:
    """A line (Slack mrkdwn) at the top of the triage channel, about no ticket: something the team
    must do, said where they work."""
    enqueue(session, Kind.DESK_NOTICE, lane=DESK_NOTICE_LANE, payload={"text": text})
