"""Read-only queries: ticket lists, search, customer history, repeat requesters, home lists, stats.

Nothing here changes the store; every function takes the caller's session, so a command reads
what it shows in the same transaction it acts in. Counting and medians over the event trail are
done in Python: the rows are few per period, and the same code then runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import statistics
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    Subquery,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from store.models import (
    Customer,
    Delivery,
    Direction,
    Label,
    Message,
    Origin,
    Priority,
    SlackUser,
    Status,
    Ticket,
    TicketEvent,
    TicketLabel,
    Visibility,
    utcnow,
)
from store.sqlite import text_lower

T = TypeVar("T")

ACTIVE = (Status.OPEN.value, Status.PENDING.value)
REPEAT_WINDOW = timedelta(days=30)
# Urgent first: the order a queue is worked in.
_PRIORITY_RANK = case(
    {Priority.URGENT.value: 0, Priority.HIGH.value: 1, Priority.NORMAL.value: 2, Priority.LOW.value: 3},
    value=Ticket.priority,
    else_=4,
)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    offset: int


@dataclass(frozen=True)
class TicketFilter:
    """`/desk list` filters; `statuses` empty means any status."""

    statuses: tuple[str, ...] = ACTIVE
    assignee_slack_id: str | None = None
    unassigned: bool = False
    label: str | None = None


def _page(session: Session, query: Select[Ticket], limit: int, offset: int) -> Page[Ticket]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    items = list(session.scalars(query.limit(limit).offset(offset)))
    return Page(items=items, total=int(total), offset=offset)


def list_tickets(session: Session, where: TicketFilter, *, limit: int = 20, offset: int = 0) -> Page[Ticket]:
    """Tickets matching the filter, most recently changed first."""
    query = select(Ticket)
    if where.statuses:
        query = query.where(Ticket.status.in_(where.statuses))
    if where.assignee_slack_id:
        query = query.where(Ticket.assignee_slack_id == where.assignee_slack_id)
    if where.unassigned:
        query = query.where(Ticket.assignee_slack_id.is_(None))
    if where.label:
        query = query.where(
            exists().where(
                TicketLabel.ticket_id == Ticket.id,
                TicketLabel.label_id == Label.id,
                Label.name == where.label.lower(),
            )
        )
    query = query.order_by(Ticket.updated_at.desc(), Ticket.id.desc())
    return _page(session, query, limit, offset)


def _like_pattern(word: str) -> str:
    escaped = word.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_tickets(
    session: Session,
    terms: Sequence[str],
    *,
    body_spelling: Callable[[str], str] | None = None,
    limit: int = 20,
    offset: int = 0,
) -> Page[Ticket]:
    """Tickets whose subject or any message body holds every term (a word, or a phrase with its
    words in that order), in any case.

    Bodies are Markdown, where a word typed as `[E42]` may be kept as `\\[E42\\]`: `body_spelling`
    gives a term as a body keeps it, and either form matches.
    """
    words = [term for term in terms if term.strip()]
    if not words:
        return Page(items=[], total=0, offset=offset)
    conditions: list[ColumnElement[bool]] = []
    for word in words:
        pattern = _like_pattern(word)
        spellings = {pattern, _like_pattern(body_spelling(word))} if body_spelling else {pattern}
        in_body = exists().where(
            Message.ticket_id == Ticket.id,
            Message.deleted_at.is_(None),
            or_(*(text_lower(Message.body_markdown).like(like, escape="\\") for like in sorted(spellings))),
        )
        conditions.append(or_(text_lower(Ticket.subject).like(pattern, escape="\\"), in_body))
    query = select(Ticket).where(and_(*conditions)).order_by(Ticket.updated_at.desc(), Ticket.id.desc())
    return _page(session, query, limit, offset)


def label_usage(session: Session) -> list[tuple[Label, int]]:
    """Every label with the number of open or pending tickets that carry it, by name."""
    active = (
        select(TicketLabel.label_id, func.count().label("tickets"))
        .join(Ticket, Ticket.id == TicketLabel.ticket_id)
        .where(Ticket.status.in_(ACTIVE))
        .group_by(TicketLabel.label_id)
        .subquery()
    )
    rows = session.execute(
        select(Label, func.coalesce(active.c.tickets, 0))
        .outerjoin(active, active.c.label_id == Label.id)
        .order_by(Label.name)
    )
    return [(row[0], int(row[1])) for row in rows]


# ----- customers -----


def customer_by_email(session: Session, email: str) -> Customer | None:
    return session.scalar(select(Customer).where(Customer.email == email.strip().lower()))


def customer_by_slack_user(session: Session, user_id: str) -> Customer | None:
    return session.scalar(select(Customer).where(Customer.slack_user_id == user_id))


def customer_tickets(
    session: Session, customer: Customer, *, limit: int = 10, offset: int = 0
) -> Page[Ticket]:
    """The tickets this customer requested, newest first."""
    query = (
        select(Ticket)
        .where(Ticket.requester_id == customer.id)
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
    )
    return _page(session, query, limit, offset)


def organization_size(session: Session, organization_id: int) -> int:
    """How many customers the organization has."""
    count = session.scalar(
        select(func.count()).select_from(Customer).where(Customer.organization_id == organization_id)
    )
    return int(count or 0)


def repeat_requests(session: Session, ticket: Ticket, window: timedelta = REPEAT_WINDOW) -> int:
    """The requester's tickets opened in the window ending at this ticket's creation, this one
    included ("3rd ticket in 30 days"). Tickets merged away are duplicates, not new requests."""
    parameters = {
        "requester_id": ticket.requester_id,
        "ticket_id": ticket.id,
        "since": ticket.created_at - window,
        "until": ticket.created_at,
    }
    return int(session.scalar(_repeat_query(), parameters) or 0)


@functools.cache
def _repeat_query() -> Select[int]:
    """Built once: every card shows the count."""
    return (
        select(func.count())
        .select_from(Ticket)
        .where(
            Ticket.requester_id == bindparam("requester_id"),
            Ticket.created_at > bindparam("since", type_=Ticket.created_at.type),
            Ticket.created_at <= bindparam("until", type_=Ticket.created_at.type),
            or_(Ticket.merged_into_id.is_(None), Ticket.id == bindparam("ticket_id")),
        )
    )


# ----- staff -----


def slack_user(session: Session, user_id: str) -> SlackUser | None:
    return session.get(SlackUser, user_id)


def slack_user_by_name(session: Session, name: str) -> SlackUser | None:
    """A person by handle or display name (a typed `@alice` that Slack did not turn into an id)."""
    name = name.lstrip("@").strip().lower()
    if not name:
        return None
    return session.scalar(
        select(SlackUser)
        .where(
            or_(text_lower(SlackUser.name) == name, text_lower(SlackUser.display_name) == name),
            SlackUser.is_bot.is_(False),
        )
        .order_by(SlackUser.is_staff.desc(), SlackUser.user_id)
        .limit(1)
    )


def is_staff(session: Session, user_id: str) -> bool:
    user = session.get(SlackUser, user_id)
    return bool(user is not None and user.is_staff and not user.is_bot)


def display_name(user: SlackUser | None, fallback: str) -> str:
    """Slack's own rule: the display name, the real name when that is empty, then the handle."""
    if user is None:
        return fallback
    return user.display_name or user.real_name or user.name or fallback


# ----- the App Home lists -----


def my_open_tickets(session: Session, user_id: str, *, limit: int = 20) -> list[Ticket]:
    query = (
        select(Ticket)
        .where(Ticket.assignee_slack_id == user_id, Ticket.status.in_(ACTIVE))
        .order_by(_PRIORITY_RANK, Ticket.created_at, Ticket.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def unassigned_tickets(session: Session, *, limit: int = 20) -> list[Ticket]:
    query = (
        select(Ticket)
        .where(Ticket.assignee_slack_id.is_(None), Ticket.status.in_(ACTIVE))
        .order_by(_PRIORITY_RANK, Ticket.created_at, Ticket.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def waiting_tickets(session: Session, *, limit: int = 20) -> list[tuple[Ticket, datetime]]:
    """Open tickets whose customer wrote last, with when they started waiting: longest first."""
    waiting_since = _waiting_since()
    query = (
        select(Ticket, waiting_since.c.at)
        .join(waiting_since, waiting_since.c.ticket_id == Ticket.id)
        .where(Ticket.status == Status.OPEN.value)
        .order_by(waiting_since.c.at, Ticket.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in session.execute(query)]


def waiting_count(session: Session) -> int:
    """How many tickets `waiting_tickets` holds in all, however few it is asked for."""
    waiting_since = _waiting_since()
    count = session.scalar(
        select(func.count())
        .select_from(Ticket)
        .join(waiting_since, waiting_since.c.ticket_id == Ticket.id)
        .where(Ticket.status == Status.OPEN.value)
    )
    return int(count or 0)


def _waiting_since() -> Subquery:
    """(ticket_id, at): each ticket whose customer wrote last, from when.

    They wait from their first message since the last answer (a second "Hello?" does not restart
    their clock); an answer is a public reply not taken back and not failed (one that never
    reached them answered nothing)."""
    inbound = aliased(Message)
    outbound = aliased(Message)
    answers = union_all(
        select(outbound.ticket_id.label("ticket_id"), outbound.created_at.label("at")).where(
            outbound.direction == Direction.OUTBOUND.value,
            outbound.visibility == Visibility.PUBLIC.value,
            outbound.deleted_at.is_(None),
            or_(
                outbound.delivery.is_(None),
                outbound.delivery.not_in([Delivery.CANCELLED.value, Delivery.FAILED.value]),
            ),
        ),
        # Staff answering in the customer's own Slack thread (no message of ours: see the trail).
        select(TicketEvent.ticket_id.label("ticket_id"), TicketEvent.created_at.label("at")).where(
            TicketEvent.kind == "direct_reply"
        ),
    ).subquery()
    last_out = (
        select(answers.c.ticket_id, func.max(answers.c.at).label("at"))
        .group_by(answers.c.ticket_id)
        .subquery()
    )
    return (
        select(inbound.ticket_id, func.min(inbound.created_at).label("at"))
        .outerjoin(last_out, last_out.c.ticket_id == inbound.ticket_id)
        .where(
            inbound.direction == Direction.INBOUND.value,
            inbound.deleted_at.is_(None),
            or_(last_out.c.at.is_(None), inbound.created_at > last_out.c.at),
        )
        .group_by(inbound.ticket_id)
        .subquery()
    )


def recently_changed(session: Session, *, limit: int = 10) -> list[Ticket]:
    query = select(Ticket).order_by(Ticket.updated_at.desc(), Ticket.id.desc()).limit(limit)
    return list(session.scalars(query))


# ----- metrics from the event trail -----


@dataclass(frozen=True)
class DeskStats:
    since: datetime
    until: datetime
    created: int = 0
    created_by_origin: dict[str, int] = field(default_factory=dict)
    created_by_label: dict[str, int] = field(default_factory=dict)
    responded: int = 0
    first_response_median: timedelta | None = None
    resolved: int = 0
    resolution_median: timedelta | None = None
    # Of the tickets resolved (those opened in the period), how many were reopened since.
    reopened: int = 0
    repeat_requesters: int = 0
    open_now: int = 0
    unassigned_now: int = 0

    @property
    def reopen_rate(self) -> float | None:
        """The share of resolved tickets reopened afterwards; None before any was resolved."""
        return self.reopened / self.resolved if self.resolved else None


def _median(durations: list[timedelta]) -> timedelta | None:
    if not durations:
        return None
    return timedelta(seconds=statistics.median(d.total_seconds() for d in durations))


def _opened_in(since: datetime, until: datetime) -> Select[int]:
    """The tickets opened in [since, until) and not merged away, as a subquery: a statement naming
    each ticket id as a parameter of its own would stop at the engine's limit (32 766 on SQLite,
    65 535 on PostgreSQL), which a busy desk's year of tickets passes."""
    return (
        select(TicketEvent.ticket_id)
        .join(Ticket, Ticket.id == TicketEvent.ticket_id)
        .where(
            TicketEvent.kind == "created",
            TicketEvent.created_at >= since,
            TicketEvent.created_at < until,
            Ticket.merged_into_id.is_(None),
        )
    )


def _duplicates_answered(session: Session, opened: Select[int], until: datetime) -> dict[int, datetime]:
    """For each ticket of `opened`, the first answer one of its duplicates had before it was merged
    into it (directly, or through a duplicate that had taken in duplicates of its own)."""
    went_into = (
        select(Ticket.id.label("id"), Ticket.merged_into_id.label("into"))
        .where(Ticket.merged_into_id.in_(opened))
        .cte("went_into", recursive=True)
    )
    went_into = went_into.union_all(
        select(Ticket.id, went_into.c.into).join(went_into, Ticket.merged_into_id == went_into.c.id)
    )
    rows = session.execute(
        select(went_into.c.into, func.min(TicketEvent.created_at))
        .join(TicketEvent, TicketEvent.ticket_id == went_into.c.id)
        .where(TicketEvent.kind == "first_response", TicketEvent.created_at < until)
        .group_by(went_into.c.into)
    ).all()
    return {ticket_id: at for ticket_id, at in rows if at is not None}


def _first_asked(session: Session, opened: Select[int]) -> dict[int, datetime]:
    """When the customer first wrote on each ticket, its merged duplicates' messages included (a
    merge moves them into it)."""
    rows = session.execute(
        select(Message.ticket_id, func.min(Message.created_at))
        .where(Message.ticket_id.in_(opened), Message.direction == Direction.INBOUND.value)
        .group_by(Message.ticket_id)
    ).all()
    return {ticket_id: at for ticket_id, at in rows if at is not None}


@dataclass(frozen=True)
class _Starts:
    """When each ticket's request began, which its resolution is timed from; and when its customer
    was waiting from, which its first response is timed from."""

    began: dict[int, datetime]
    waiting: dict[int, datetime]


def _request_starts(
    session: Session, opened: Select[int], opened_at: dict[int, datetime], staff_opened: set[int]
) -> _Starts:
    """A request began when its ticket was opened, or earlier when a duplicate opened before it was
    merged into it (the customer has waited since then: their first message moved in with the
    merge). A `/desk new` ticket's opening asked the customer nothing, so it is no first response
    (`store.actions.messages`) nor the start of one: its customer waits from their first message,
    however long they took to answer the opening."""
    asked = _first_asked(session, opened)
    began = {t: min(at, asked.get(t, at)) for t, at in opened_at.items()}
    waiting = {t: asked.get(t, at) if t in staff_opened else at for t, at in began.items()}
    return _Starts(began, waiting)


def _since(start: dict[int, datetime], ends: dict[int, datetime]) -> list[timedelta]:
    # Never below zero: an answer given in a duplicate's own Slack thread, before the customer of a
    # `/desk new` ticket it went into wrote, was still an answer at once.
    return [max(at - start[t], timedelta(0)) for t, at in ends.items()]


def desk_stats(session: Session, since: datetime, until: datetime | None = None) -> DeskStats:
    """Volume, first response and resolution of the tickets opened in [since, until)."""
    until = until or utcnow()
    # A duplicate merged away is the same request as the ticket it went into: counted there, not
    # as a second request opened and never resolved; an answer it had is that request's answer.
    opened = _opened_in(since, until)
    created = session.execute(
        select(TicketEvent.ticket_id, TicketEvent.created_at, TicketEvent.data).where(
            TicketEvent.kind == "created", TicketEvent.ticket_id.in_(opened)
        )
    ).all()
    opened_at = {ticket_id: at for ticket_id, at, _data in created}
    staff_opened = {t for t, _at, data in created if (data or {}).get("origin") == Origin.STAFF.value}
    origins = Tally(str((data or {}).get("origin", "unknown")) for _id, _at, data in created)
    first_response = _duplicates_answered(session, opened, until)
    resolved: dict[int, datetime] = {}
    reopened: set[int] = set()
    trail = session.execute(
        select(TicketEvent.ticket_id, TicketEvent.kind, TicketEvent.created_at, TicketEvent.data)
        .where(
            TicketEvent.ticket_id.in_(opened),
            TicketEvent.kind.in_(["first_response", "status", "reopened"]),
            TicketEvent.created_at < until,
        )
        .order_by(TicketEvent.created_at, TicketEvent.id)
    ).all()
    for ticket_id, kind, at, data in trail:
        if kind == "first_response":
            first_response[ticket_id] = min(at, first_response.get(ticket_id, at))
        elif kind == "reopened":
            reopened.add(ticket_id)
        elif (data or {}).get("new") in (Status.RESOLVED.value, Status.CLOSED.value):
            resolved.setdefault(ticket_id, at)
    started = _request_starts(session, opened, opened_at, staff_opened)
    labels = Tally(
        session.scalars(
            select(Label.name)
            .join(TicketLabel, TicketLabel.label_id == Label.id)
            .where(TicketLabel.ticket_id.in_(opened))
        ).all()
    )
    # A duplicate merged away is the same request, not a repeat one (as the card counts them).
    requesters = Tally(session.scalars(select(Ticket.requester_id).where(Ticket.id.in_(opened))).all())
    open_now = session.scalar(select(func.count()).select_from(Ticket).where(Ticket.status.in_(ACTIVE)))
    unassigned_now = session.scalar(
        select(func.count())
        .select_from(Ticket)
        .where(Ticket.status.in_(ACTIVE), Ticket.assignee_slack_id.is_(None))
    )
    return DeskStats(
        since=since,
        until=until,
        created=len(opened_at),
        created_by_origin=dict(origins.most_common()),
        created_by_label=dict(labels.most_common()),
        responded=len(first_response),
        first_response_median=_median(_since(started.waiting, first_response)),
        resolved=len(resolved),
        resolution_median=_median(_since(started.began, resolved)),
        reopened=len(reopened),
        repeat_requesters=sum(1 for count in requesters.values() if count > 1),
        open_now=int(open_now or 0),
        unassigned_now=int(unassigned_now or 0),
    )
