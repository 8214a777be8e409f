"""Ticket actions: open, find, and triage (status, priority, assignee, labels, links, merge, Cc)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import Select, bindparam, delete, exists, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.elements import ColumnElement

from store import outbox
from store.actions.common import (
    Actor,
    DeskPolicy,
    check_address,
    enqueue_emails,
    literal,
    mail_started,
    notify_customer,
    record_event,
    thread_line,
    touch,
    update_card,
)
from store.db import InvalidRequest, NotFound
from store.keys import random_key
from store.models import (
    MAX_LINK_URL_CHARS,
    Counter,
    Customer,
    EmailId,
    Label,
    LinkKind,
    Message,
    Organization,
    Origin,
    Participant,
    Priority,
    SlackUser,
    Status,
    Ticket,
    TicketEvent,
    TicketLabel,
    TicketLink,
    utcnow,
)

TICKET_COUNTER = "ticket_number"


def next_ticket_number(session: Session) -> int:
    """Sequential, never reused: the counter row's lock serializes concurrent writers."""
    value = session.execute(_next_number_statement()).scalar()
    if value is None:
        session.add(Counter(name=TICKET_COUNTER, value=1))
        session.flush()
        return 1
    return int(value)


@functools.cache
def _next_number_statement() -> ReturningUpdate[int]:
    return (
        update(Counter)
        .where(Counter.name == TICKET_COUNTER)
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    )


def open_ticket(
    session: Session,
    policy: DeskPolicy,
    *,
    subject: str,
    requester: Customer,
    origin: Origin,
    actor: Actor,
    origin_channel: str | None = None,
    origin_thread_ts: str | None = None,
    now: datetime | None = None,
) -> Ticket:
    """A new ticket; its card goes to the triage channel. Messages are added separately."""
    ticket, _participant = start_ticket(
        session,
        policy,
        subject=subject,
        requester=requester,
        origin=origin,
        actor=actor,
        origin_channel=origin_channel,
        origin_thread_ts=origin_thread_ts,
        now=now,
    )
    return ticket


def start_ticket(
    session: Session,
    policy: DeskPolicy,
    *,
    subject: str,
    requester: Customer,
    origin: Origin,
    actor: Actor,
    origin_channel: str | None = None,
    origin_thread_ts: str | None = None,
    now: datetime | None = None,
) -> tuple[Ticket, Participant | None]:
    """`open_ticket`, also handing back the requester's mail participant (None when the requester
    has no address, or is answered in Slack), so a caller mailing them need not query it back.

    `now`: when the request arrived, if not now (a mail that waited in the intake queue): the
    times every metric starts from (time to first response, to resolution) are the customer's."""
    now = now or utcnow()
    ticket = Ticket(
        number=next_ticket_number(session),
        subject=(subject.strip() or "(no subject)")[:500],
        status=Status.OPEN,
        priority=Priority.NORMAL,
        origin=origin,
        requester_id=requester.id,
        reply_key=random_key(),
        triage_channel=policy.triage_channel,
        origin_channel=origin_channel,
        origin_thread_ts=origin_thread_ts,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    session.flush()
    participant: Participant | None = None
    if requester.email and not origin_channel:
        participant = Participant(
            ticket_id=ticket.id,
            email=requester.email,
            name=requester.name,
            role="requester",
            unsubscribe_key=random_key(),
            created_at=now,
        )
        session.add(participant)
    record_event(session, ticket, "created", actor, at=now, origin=origin.value, requester_id=requester.id)
    outbox.enqueue(session, outbox.Kind.CARD, ticket_id=ticket.id, lane=outbox.triage_lane(ticket.id))
    if origin_channel and origin_thread_ts:
        outbox.enqueue(
            session, outbox.Kind.ORIGIN_ACK, ticket_id=ticket.id, lane=outbox.origin_lane(ticket.id)
        )
    return ticket, participant


# ----- finding tickets -----


# How every change locks a ticket (PostgreSQL's FOR NO KEY UPDATE): changes of one ticket take turns,
# while adding a row that names it (a thread line, a notice to a ticket merged into another) only
# needs its key to stay, so never waits for one. A full FOR UPDATE would make such a row wait for
# any change of the ticket it names, and two changes of two tickets that each add a row naming the
# other's ticket would deadlock.
TICKET_LOCK: dict[str, Any] = {"key_share": True}


def follow_merges(session: Session, ticket: Ticket | None) -> Ticket | None:
    """Where a ticket's conversation continues: itself, or the ticket it was merged into (and on)."""
    hops = 0
    while ticket is not None and ticket.merged_into_id is not None and hops < 20:
        ticket = session.get(Ticket, ticket.merged_into_id)
        hops += 1
    return ticket


def ticket_by_number(session: Session, number: int, *, lock: bool = False) -> Ticket:
    """`lock`: as every change to a ticket locks it (`TICKET_LOCK`)."""
    query = select(Ticket).where(Ticket.number == number)
    if lock:
        query = query.with_for_update(**TICKET_LOCK)
    ticket = session.scalar(query)
    if ticket is None:
        raise NotFound(f"there is no ticket #{number}")
    return ticket


def ticket_by_reply_key(session: Session, reply_key: str) -> Ticket | None:
    """The ticket a reply address belongs to (a merged ticket's key leads to where it went)."""
    ticket = session.scalar(select(Ticket).where(Ticket.reply_key == reply_key.lower()))
    return follow_merges(session, ticket)


def ticket_by_email_ids(session: Session, message_ids: Iterable[str]) -> Ticket | None:
    """The ticket of the first Message-ID (In-Reply-To, then References) we sent or received."""
    for message_id in message_ids:
        ticket_id = session.scalar(_ticket_by_email_id_query(), {"message_id": message_id})
        if ticket_id is not None:
            return follow_merges(session, session.get(Ticket, ticket_id))
    return None


@functools.cache
def _ticket_by_email_id_query() -> Select[int]:
    return select(EmailId.ticket_id).where(EmailId.message_id == bindparam("message_id"))


def ticket_by_slack_thread(session: Session, channel: str, thread_ts: str) -> Ticket | None:
    """The ticket a message in this triage or customer thread goes to (merges followed)."""
    return follow_merges(session, ticket_owning_slack_thread(session, channel, thread_ts))


def ticket_owning_slack_thread(session: Session, channel: str, thread_ts: str) -> Ticket | None:
    """The ticket whose triage thread or customer thread this is, merged away or not."""
    return session.scalar(
        select(Ticket).where(
            or_(
                (Ticket.triage_channel == channel) & (Ticket.triage_ts == thread_ts),
                (Ticket.origin_channel == channel) & (Ticket.origin_thread_ts == thread_ts),
            )
        )
    )


def is_triage_thread(ticket: Ticket, channel: str) -> bool:
    return ticket.triage_channel == channel


# ----- triage -----

REOPENING = {Status.RESOLVED.value, Status.CLOSED.value}
NOTICE_FOR_STATUS = {Status.RESOLVED.value: "resolved", Status.CLOSED.value: "closed"}


def set_status(
    session: Session, policy: DeskPolicy, ticket: Ticket, status: str, actor: Actor, *, notify: bool = True
) -> bool:
    """Change the lifecycle state; the customer is told of resolved, closed and reopened."""
    try:
        new = Status(status)
    except ValueError:
        raise InvalidRequest(f"unknown status {status!r}: use open, pending, resolved or closed") from None
    old = ticket.status
    if old == new.value:
        return False
    now = utcnow()
    ticket.status = new.value
    if new is Status.RESOLVED:
        # From closed it stays resolved since it was (a reopen cleared both times); it is not closed.
        kept = old == Status.CLOSED.value and ticket.resolved_at is not None
        ticket.resolved_at = ticket.resolved_at if kept else now
        ticket.closed_at = None
    elif new is Status.CLOSED:
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    reopened = old in REOPENING and new.value not in REOPENING
    if reopened:
        # The times of its last resolution, not of the first one it ever had.
        ticket.resolved_at = ticket.closed_at = None
    record_event(session, ticket, "reopened" if reopened else "status", actor, old=old, new=new.value)
    touch(ticket)
    update_card(session, ticket)
    done = "reopened the ticket" if reopened else f"set status to {new.value}"
    thread_line(session, ticket, f"{actor.shown} {done}")
    if notify:
        if reopened:
            notify_customer(session, ticket, policy, "reopened")
        elif new.value in NOTICE_FOR_STATUS:
            notify_customer(session, ticket, policy, NOTICE_FOR_STATUS[new.value])
    return True


def set_priority(session: Session, ticket: Ticket, priority: str, actor: Actor) -> bool:
    try:
        new = Priority(priority)
    except ValueError:
        raise InvalidRequest(f"unknown priority {priority!r}: use low, normal, high or urgent") from None
    if ticket.priority == new.value:
        return False
    record_event(session, ticket, "priority", actor, old=ticket.priority, new=new.value)
    ticket.priority = new.value
    touch(ticket)
    update_card(session, ticket)
    thread_line(session, ticket, f"{actor.shown} set priority to {new.value}")
    return True


def assign(
    session: Session,
    ticket: Ticket,
    assignee_slack_id: str | None,
    actor: Actor,
    assignee_name: str | None = None,
) -> bool:
    if ticket.assignee_slack_id == assignee_slack_id:
        return False
    if assignee_slack_id and _is_outside_customer(session, assignee_slack_id):
        raise InvalidRequest("a customer cannot own a ticket")
    record_event(session, ticket, "assigned", actor, old=ticket.assignee_slack_id, new=assignee_slack_id)
    ticket.assignee_slack_id = assignee_slack_id
    touch(ticket)
    update_card(session, ticket)
    if assignee_slack_id:
        # The new owner is mentioned: Slack shows their name and tells them the ticket is theirs
        # (the card's update tells no one). Someone who took it themselves needs no telling.
        if assignee_name and assignee_slack_id == actor.slack_id:
            who = literal(assignee_name)
        else:
            who = f"<@{assignee_slack_id}>"
        thread_line(session, ticket, f"{actor.shown} assigned the ticket to {who}")
    else:
        thread_line(session, ticket, f"{actor.shown} unassigned the ticket")
    return True


def _is_outside_customer(session: Session, slack_user_id: str) -> bool:
    """Someone from another organization's workspace who wrote in through a Slack Connect channel
    (their organization is their team). Colleagues who filed a request of their own are not.

    A customer first known by email keeps the organization of their mail domain when they later
    write in Slack, and someone in a shared channel may not have written at all: so their team (as
    a customer, or from their cached Slack profile) is also compared with the staff's: a team no
    staff member belongs to is another organization's workspace."""
    if (
        session.scalar(
            select(Customer.id)
            .join(Organization, Organization.id == Customer.organization_id)
            .where(
                Customer.slack_user_id == slack_user_id,
                Organization.slack_team_id == Customer.slack_team_id,
            )
        )
        is not None
    ):
        return True
    team = session.scalar(
        select(Customer.slack_team_id).where(Customer.slack_user_id == slack_user_id)
    ) or session.scalar(select(SlackUser.team_id).where(SlackUser.user_id == slack_user_id))
    if team is None:
        return False
    staff_teams = set(
        session.scalars(
            select(SlackUser.team_id).where(SlackUser.is_staff.is_(True), SlackUser.team_id.is_not(None))
        )
    )
    return bool(staff_teams) and team not in staff_teams


# Quotes typed around a name, straight or as keyboards curl them: never part of a one-word label.
LABEL_QUOTES = "\"'“”„«»‘’"


def normalise_label(name: str) -> str:
    cleaned = name.strip().strip(LABEL_QUOTES).lstrip("+-").strip().strip(LABEL_QUOTES).lower()
    if not cleaned or len(cleaned) > 64 or any(c.isspace() or c in ",<>&*`" for c in cleaned):
        raise InvalidRequest(f"{name!r} is not a label name: one word, up to 64 characters")
    return cleaned


# A color name or #rgb / #rrggbb, as the card shows it; the column holds 16 characters.
_COLOR = re.compile(r"^(?:[A-Za-z]{1,16}|#[0-9A-Fa-f]{3}|#[0-9A-Fa-f]{6})$")


def create_label(session: Session, name: str, color: str | None = None) -> Label:
    name = normalise_label(name)
    if session.scalar(select(Label).where(Label.name == name)) is not None:
        raise InvalidRequest(f"label {name} exists already")
    if color is not None and not _COLOR.match(color):
        raise InvalidRequest(f"{color[:40]!r} is not a color: use a name or #rrggbb")
    first = session.scalar(select(Label.id).limit(1)) is None
    label = Label(name=name, color=color, created_at=utcnow())
    session.add(label)
    session.flush()
    if first:
        # A card drawn before any label existed has no label menu and says "No labels defined
        # yet": the cards of tickets still being worked are drawn again, once in the desk's life.
        # (Later labels reach a card's menu at its next change: redrawing every open card for each
        # new label would spend Slack's chat.update budget that triage changes need.)
        for ticket in session.scalars(
            select(Ticket).where(
                Ticket.status.in_((Status.OPEN.value, Status.PENDING.value)),
                Ticket.merged_into_id.is_(None),
                Ticket.triage_ts.is_not(None),
            )
        ):
            update_card(session, ticket)
    return label


def label_names(session: Session, ticket: Ticket) -> tuple[list[str], list[str]]:
    """Every label's name and the ticket's own, by name, in one statement built once."""
    rows = session.execute(_label_names_query(), {"ticket_id": ticket.id}).all()
    return [name for name, _on in rows], [name for name, on in rows if on]


@functools.cache
def _label_names_query() -> Select[str, bool]:
    on_ticket = exists().where(
        TicketLabel.ticket_id == bindparam("ticket_id"), TicketLabel.label_id == Label.id
    )
    return select(Label.name, on_ticket.label("on_ticket")).order_by(Label.name)


def change_labels(
    session: Session, ticket: Ticket, add: Iterable[str], remove: Iterable[str], actor: Actor
) -> tuple[list[str], list[str]]:
    """Add and remove labels by name; unknown names are refused (no label made by a typo)."""
    to_add = [normalise_label(n) for n in add]
    to_remove = [normalise_label(n) for n in remove]
    known = {
        label.name: label
        for label in session.scalars(select(Label).where(Label.name.in_(to_add + to_remove)))
    }
    unknown = sorted({n for n in to_add + to_remove if n not in known})
    if unknown:
        raise InvalidRequest(
            f"no label named {', '.join(unknown)}; create it with `/desk label-create {unknown[0]}`"
        )
    current = {label.name for label in ticket.labels}
    added = [n for n in dict.fromkeys(to_add) if n not in current]
    removed = [n for n in dict.fromkeys(to_remove) if n in current and n not in added]
    for name in added:
        session.add(TicketLabel(ticket_id=ticket.id, label_id=known[name].id))
    for name in removed:
        session.execute(
            delete(TicketLabel).where(
                TicketLabel.ticket_id == ticket.id, TicketLabel.label_id == known[name].id
            )
        )
    if not added and not removed:
        return [], []
    session.flush()
    session.expire(ticket, ["labels"])
    record_event(session, ticket, "labels", actor, added=added, removed=removed)
    touch(ticket)
    update_card(session, ticket)
    parts = [f"+{n}" for n in added] + [f"-{n}" for n in removed]
    thread_line(session, ticket, f"{actor.shown} changed labels: {' '.join(parts)}")
    return added, removed


def _check_url(url: str) -> str:
    if len(url) > MAX_LINK_URL_CHARS:
        raise InvalidRequest(f"that link is longer than {MAX_LINK_URL_CHARS:,} characters: use a shorter URL")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or any(c in url for c in " \r\n<>"):
        raise InvalidRequest(f"{url!r} is not a link: give a ticket number or an http(s) URL")
    return url


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _url_key(url: str) -> tuple[str, str, str]:
    """What makes two links the same link: the scheme and host in any case, the default port
    written or not, and an empty path as `/` (RFC 3986 6.2.2-6.2.3). The rest (path, query,
    fragment) as written: a tracker's paths may be case-sensitive."""
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    try:
        port = parsed.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS.get(parsed.scheme.lower())) else f"{host}:{port}"
    if parsed.username is not None or parsed.password is not None:
        netloc = f"{parsed.netloc.rpartition('@')[0]}@{netloc}"
    rest = (parsed.path or "/") + (f";{parsed.params}" if parsed.params else "")
    rest += (f"?{parsed.query}" if parsed.query else "") + (f"#{parsed.fragment}" if parsed.fragment else "")
    return parsed.scheme.lower(), netloc, rest


def _url_links(session: Session, ticket: Ticket, url: str) -> list[TicketLink]:
    """The ticket's links to `url`, however the stored ones wrote its scheme, host and port."""
    key = _url_key(url)
    stored = session.scalars(
        select(TicketLink).where(TicketLink.ticket_id == ticket.id, TicketLink.url.is_not(None))
    )
    return [row for row in stored if row.url is not None and _url_key(row.url) == key]


def _keep_merge_link(ticket: Ticket, target: Ticket | None) -> None:
    """Refuse to change the link between a merged ticket and the ticket it went into: it is the
    merge's record ("#n (duplicated by)" on the target's card), and the merged ticket's banner keeps
    naming the target whatever is done to it. The merged ticket itself takes no triage; this guards
    its target's side (`unlink m n`, `link m n relates`)."""
    if target is None:
        return
    for merged, into in ((ticket, target), (target, ticket)):
        if merged.merged_into_id == into.id:
            raise InvalidRequest(
                f"#{merged.number} was merged into #{into.number}, so the link between them is the "
                "merge's and stays"
            )


def link(
    session: Session,
    ticket: Ticket,
    actor: Actor,
    *,
    target: Ticket | None = None,
    url: str | None = None,
    kind: str = LinkKind.RELATES,
) -> bool:
    try:
        link_kind = LinkKind(kind)
    except ValueError:
        raise InvalidRequest(f"unknown link kind {kind!r}: use relates, duplicates or blocks") from None
    if target is not None and target.id == ticket.id:
        raise InvalidRequest("a ticket cannot be linked to itself")
    if target is None and url is None:
        raise InvalidRequest("link needs a ticket number or a URL")
    if url is not None:
        url = _check_url(url)
    _keep_merge_link(ticket, target)
    if target is not None:
        existing = session.scalar(
            select(TicketLink).where(
                TicketLink.ticket_id == ticket.id, TicketLink.target_ticket_id == target.id
            )
        )
    else:
        existing = next(iter(_url_links(session, ticket, str(url))), None)
    reverse = (
        session.scalar(
            select(TicketLink).where(
                TicketLink.ticket_id == target.id, TicketLink.target_ticket_id == ticket.id
            )
        )
        if target is not None
        else None
    )
    if reverse is not None:
        # Two tickets have one link between them: the same one asked from the other side, or one
        # that now points this way (a card would list the other ticket twice).
        if reverse.kind == link_kind.value == LinkKind.RELATES:
            return False
        session.delete(reverse)
    if existing is not None:
        if existing.kind == link_kind.value:
            return False
        existing.kind = link_kind.value
    else:
        session.add(
            TicketLink(
                ticket_id=ticket.id,
                target_ticket_id=target.id if target else None,
                url=url,
                kind=link_kind.value,
                created_by=actor.ref,
                created_at=utcnow(),
            )
        )
    what = f"#{target.number}" if target is not None else str(url)
    record_event(session, ticket, "linked", actor, target=what, link_kind=link_kind.value)
    touch(ticket)
    update_card(session, ticket)
    thread_line(session, ticket, f"{actor.shown} linked {literal(what)} ({link_kind.value})", about=target)
    if target is not None:
        update_card(session, target)
        thread_line(
            session,
            target,
            f"{actor.shown} linked #{ticket.number} to this ticket ({link_kind.value})",
            about=ticket,
        )
    return True


def unlink(
    session: Session, ticket: Ticket, actor: Actor, *, target: Ticket | None = None, url: str | None = None
) -> bool:
    _keep_merge_link(ticket, target)
    condition: ColumnElement[bool]
    if target is not None:
        condition = ((TicketLink.ticket_id == ticket.id) & (TicketLink.target_ticket_id == target.id)) | (
            (TicketLink.ticket_id == target.id) & (TicketLink.target_ticket_id == ticket.id)
        )
    else:
        ids = [row.id for row in _url_links(session, ticket, str(url or ""))]
        condition = TicketLink.id.in_(ids)
    result = session.execute(delete(TicketLink).where(condition))
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    what = f"#{target.number}" if target is not None else str(url)
    record_event(session, ticket, "unlinked", actor, target=what)
    touch(ticket)
    update_card(session, ticket)
    thread_line(session, ticket, f"{actor.shown} removed the link to {literal(what)}", about=target)
    if target is not None:
        update_card(session, target)
        thread_line(session, target, f"{actor.shown} removed the link to #{ticket.number}", about=ticket)
    return True


def links_of(session: Session, ticket: Ticket) -> list[tuple[str, int | None, str | None]]:
    """(kind as seen from this ticket, the other ticket's number, url) for the card, in link order."""
    inverse = {"relates": "relates", "duplicates": "duplicated_by", "blocks": "blocked_by"}
    rows = session.execute(_links_query(), {"ticket_id": ticket.id}).all()
    return [
        (row.kind, row.target_number, row.url)
        if row.ticket_id == ticket.id
        else (inverse[row.kind], row.source_number, None)
        for row in rows
    ]


@functools.cache
def _links_query() -> Select[*tuple[Any, ...]]:
    """A ticket's links both ways with the numbers of the tickets at either end: one statement,
    built once (every card shows them)."""
    target, source = aliased(Ticket), aliased(Ticket)
    ticket_id = bindparam("ticket_id", type_=Ticket.id.type)
    return (
        select(
            TicketLink.ticket_id,
            TicketLink.kind,
            TicketLink.url,
            target.number.label("target_number"),
            source.number.label("source_number"),
        )
        .join(source, source.id == TicketLink.ticket_id)
        .outerjoin(target, target.id == TicketLink.target_ticket_id)
        .where(or_(TicketLink.ticket_id == ticket_id, TicketLink.target_ticket_id == ticket_id))
        .order_by(TicketLink.id)
    )


# ----- participants -----


@dataclass
class TicketParticipants:
    """The addresses on a ticket and its Cc count, read in one query and kept current by
    `add_participant`, for a caller adding several at once (a mail's Cc list)."""

    emails: set[str]
    cc_count: int
    # Those whose mail bounced: a mail from one of them shows their mailbox works again.
    bounced: set[str] = field(default_factory=set)
    # Opened in this transaction: nobody can have been removed from it yet.
    new_ticket: bool = False


def participants_of(session: Session, ticket: Ticket) -> TicketParticipants:
    found = session.execute(_participants_query(), {"ticket_id": ticket.id}).all()
    return TicketParticipants(
        emails={row.email for row in found},
        cc_count=sum(row.role == "cc" for row in found),
        bounced={row.email for row in found if row.bounced_at is not None},
    )


def participant_on(session: Session, ticket_id: int, email: str) -> Participant | None:
    """The ticket's participant with this (lowercased) address."""
    return session.scalar(
        select(Participant).where(Participant.ticket_id == ticket_id, Participant.email == email)
    )


def participants_of_new_ticket(requester: Participant | None) -> TicketParticipants:
    """What `participants_of` would read right after `start_ticket`, without the read (and the
    flush before it): the requester's mail participant, if it made one, and no Cc's yet."""
    return TicketParticipants(
        emails={requester.email} if requester is not None else set(), cc_count=0, new_ticket=True
    )


@functools.cache
def _participants_query() -> Select[str, str, datetime | None]:
    return select(Participant.email, Participant.role, Participant.bounced_at).where(
        Participant.ticket_id == bindparam("ticket_id", type_=Ticket.id.type)
    )


def add_participant(
    session: Session,
    policy: DeskPolicy,
    ticket: Ticket,
    email: str,
    actor: Actor,
    *,
    name: str = "",
    notify: bool = True,
    known: TicketParticipants | None = None,
    now: datetime | None = None,
) -> Participant | None:
    """Add a Cc participant; None when already there, or when the cap is reached (named in the thread).

    `known` (from `participants_of`, in this transaction) saves reading the ticket's participants
    again for each address. `now` is the time of the change it is part of (the ticket it opens).
    """
    email = check_address(email)
    if policy.is_own_address(email):
        return None
    existing = participant_on(session, ticket.id, email) if known is None or email in known.emails else None
    if existing is not None:
        if actor.slack_id and (existing.unsubscribed_at is not None or existing.bounced_at is not None):
            # Staff adding someone who unsubscribed, or whose mail bounced, is a deliberate choice.
            existing.unsubscribed_at = existing.bounced_at = existing.bounce_reason = None
            record_event(session, ticket, "participant_readded", actor, email=email)
            touch(ticket)
            thread_line(session, ticket, f"{actor.shown} added {literal(email)} back to the ticket")
            return existing
        return None
    removable = known is None or not known.new_ticket
    removal = _last_removal(session, ticket, email) if not actor.slack_id and removable else None
    if removal is not None:
        # Their mail still lands on the ticket; hearing its replies again is staff's call. The thread
        # is told once per removal, not on every mail of a reply-all chain that copies them.
        if removal == "participant_removed":
            record_event(session, ticket, NOT_READDED, actor, email=email)
            thread_line(
                session,
                ticket,
                f"{literal(email)} was removed from this ticket and is not added back by mail: "
                f"`!cc add {literal(email)}` if they should get its emails again.",
            )
        return None
    if known is not None:
        count = known.cc_count
    else:
        count = len(
            session.scalars(
                select(Participant.id).where(Participant.ticket_id == ticket.id, Participant.role == "cc")
            ).all()
        )
    if count >= policy.max_participants:
        record_event(session, ticket, "participant_capped", actor, email=email)
        return None
    now = now or utcnow()
    participant = Participant(
        ticket_id=ticket.id,
        email=email,
        name=name,
        role="cc",
        unsubscribe_key=random_key(),
        created_at=now,
    )
    session.add(participant)
    if known is not None:
        known.emails.add(email)
        known.cc_count += 1
    # A ticket staff opened with `/desk new` that the desk has not written on yet: the requester has
    # heard nothing, so a welcome to a colleague would be the first anyone hears of it (and, once
    # sent, would count as the desk having written to the requester). The desk's first reply
    # reaches the new participant with everyone else.
    notify = notify and mail_started(session, ticket)
    if notify:
        session.flush()  # the welcome mail names the participant's id
    record_event(session, ticket, "participant_added", actor, email=email)
    touch(ticket, now)
    if actor.slack_id:
        # Staff added them (`cc add`): say so in the thread, as every triage change does.
        thread_line(session, ticket, f"{actor.shown} added {literal(email)} to the ticket")
    if notify:
        enqueue_emails(session, ticket, policy, template="new_participant", only=[participant])
    return participant


def remove_participant(session: Session, ticket: Ticket, email: str, actor: Actor) -> bool:
    email = email.strip().lower()
    participant = participant_on(session, ticket.id, email)
    if participant is None:
        raise InvalidRequest(f"{email} is not a participant of #{ticket.number}")
    if participant.role == "requester":
        raise InvalidRequest(f"{email} is the requester of #{ticket.number} and cannot be removed")
    session.delete(participant)
    record_event(session, ticket, "participant_removed", actor, email=email)
    touch(ticket)
    thread_line(session, ticket, f"{actor.shown} removed {literal(email)} from the ticket")
    return True


NOT_READDED = "participant_not_readded"


def _last_removal(session: Session, ticket: Ticket, email: str) -> str | None:
    """The latest of staff removing `email` from the ticket and the thread being told that their
    mail did not bring them back; None when staff never removed them."""
    return session.scalar(
        select(TicketEvent.kind)
        .where(
            TicketEvent.ticket_id == ticket.id,
            TicketEvent.kind.in_(["participant_removed", NOT_READDED]),
            TicketEvent.data["email"].as_string() == email,
        )
        .order_by(TicketEvent.id.desc())
        .limit(1)
    )


def clear_bounce(session: Session, ticket: Ticket, email: str) -> None:
    """A participant whose mail bounced wrote in: their mailbox works, so they get mail again."""
    participant = participant_on(session, ticket.id, email)
    if participant is None or participant.bounced_at is None:
        return
    participant.bounced_at = participant.bounce_reason = None
    record_event(session, ticket, "bounce_cleared", None, email=email)
    thread_line(session, ticket, f"{literal(email)} wrote in again: mail to them goes out again.")


# ----- merge -----


def _link_duplicate(session: Session, source: Ticket, target: Ticket, actor: Actor) -> None:
    """Cross-link the two: the target's card then shows "#n (duplicated by)"."""
    existing = session.scalar(
        select(TicketLink).where(
            or_(
                (TicketLink.ticket_id == source.id) & (TicketLink.target_ticket_id == target.id),
                (TicketLink.ticket_id == target.id) & (TicketLink.target_ticket_id == source.id),
            )
        )
    )
    if existing is not None:
        if existing.ticket_id == source.id:
            existing.kind = LinkKind.DUPLICATES.value
            return
        # A link from the target's side (relates, blocks) gives way to the duplicate's own: the two
        # tickets keep one link between them, as `link` does.
        session.delete(existing)
    session.add(
        TicketLink(
            ticket_id=source.id,
            target_ticket_id=target.id,
            kind=LinkKind.DUPLICATES.value,
            created_by=actor.ref,
            created_at=utcnow(),
        )
    )


def merge(session: Session, policy: DeskPolicy, source: Ticket, target: Ticket, actor: Actor) -> None:
    """Move messages and participants of `source` into `target`; later replies to source land on target."""
    if source.id == target.id:
        raise InvalidRequest("a ticket cannot be merged into itself")
    if source.merged_into_id is not None:
        raise InvalidRequest(f"#{source.number} was merged already")
    if target.merged_into_id is not None:
        raise InvalidRequest(f"#{target.number} was merged into another ticket; merge into that one")
    # Tell the source's customer once, while its participants are still its own.
    notify_customer(session, source, policy, "merged", target_number=target.number)
    session.execute(update(Message).where(Message.ticket_id == source.id).values(ticket_id=target.id))
    session.execute(update(EmailId).where(EmailId.ticket_id == source.id).values(ticket_id=target.id))
    target_emails = set(session.scalars(select(Participant.email).where(Participant.ticket_id == target.id)))
    for participant in session.scalars(select(Participant).where(Participant.ticket_id == source.id)).all():
        # One already on the target stays behind, unused: the keys in mail sent to them before
        # (unsubscribe links, bounce addresses) still name them (`participant_by_key`).
        if participant.email not in target_emails:
            participant.ticket_id = target.id
            participant.role = "cc"
    source.merged_into_id = target.id
    _link_duplicate(session, source, target, actor)
    previous = source.status
    source.status = Status.CLOSED
    source.closed_at = utcnow()
    record_event(session, source, "merged", actor, into=target.number, old=previous)
    record_event(session, target, "merged_in", actor, source=source.number)
    touch(source)
    touch(target)
    update_card(session, source)
    update_card(session, target)
    # Each line links the other thread: someone reading one goes on in the other with a click.
    thread_line(session, source, f"{actor.shown} merged this ticket into #{target.number}", about=target)
    thread_line(session, target, f"{actor.shown} merged #{source.number} into this ticket", about=source)
