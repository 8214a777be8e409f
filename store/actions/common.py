"""Pieces every action shares: who acts, the desk's policy, events, and what to tell whom."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, exists, or_, select
from sqlalchemy.orm import Session

from store import outbox
from store.db import InvalidRequest
from store.domains import with_ascii_domain
from store.keys import new_message_id
from store.limits import ADDRESS_LITERAL, MAX_ADDRESS_CHARS, MAX_LOCAL_PART_CHARS
from store.models import (
    EmailId,
    Origin,
    Outbox,
    OutboxState,
    Participant,
    Ticket,
    TicketEvent,
    utcnow,
)
from store.outbox import Kind


@dataclass(frozen=True)
class Actor:
    """Who made a change: a staff member (Slack id), a customer (email), or the desk itself."""

    name: str
    slack_id: str | None = None
    email: str | None = None

    @property
    def ref(self) -> str | None:
        return self.slack_id or self.email

    @property
    def shown(self) -> str:
        """The name as a thread line writes it (a customer chose it: see `literal`)."""
        return literal(self.name)


DESK = Actor(name="servicedesk")


@dataclass(frozen=True)
class DeskPolicy:
    """The settings actions need, so the store never reads the environment."""

    mail_domain: str = "localhost"
    acknowledge: bool = True
    reply_delay: timedelta = timedelta(seconds=10)
    max_participants: int = 25
    triage_channel: str | None = None
    support_addresses: frozenset[str] = field(default_factory=frozenset)

    def is_own_address(self, email: str) -> bool:
        """A support address, or any `+detail` form of one (a ticket's reply address, an
        unsubscribe address): mail sent there comes back to the desk, so it is never a customer."""
        local, _, domain = email.strip().lower().rpartition("@")
        for address in self.support_addresses:
            own_local, _, own_domain = address.lower().rpartition("@")
            if domain in (own_domain, self.mail_domain) and (
                local == own_local or local.startswith(own_local + "+")
            ):
                return True
        return False


def check_address(email: str) -> str:
    """The address, lower-cased, when it has the shape of one mail can be delivered to: what the
    intake takes (`mail.addresses.normalize_address`: `root@localhost` and `ops@[10.0.0.1]` too),
    within RFC 5321's lengths."""
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if (
        not at
        or not local
        or not domain
        or "@" in domain
        or len(email) > MAX_ADDRESS_CHARS
        or len(local) > MAX_LOCAL_PART_CHARS
        or any(c.isspace() or c in '<>,;"()' for c in email)
        or _has_stray_brackets(local, domain)
    ):
        raise InvalidRequest(f"{email[:60]!r} is not an email address")
    # One form of an internationalised domain, as the intake writes it: one mailbox, one customer.
    converted = with_ascii_domain(email)
    return converted if len(converted) <= MAX_ADDRESS_CHARS else email


def _has_stray_brackets(local: str, domain: str) -> bool:
    """Brackets or a backslash outside an address literal domain: no mail header could carry them."""
    outside_literal = local if ADDRESS_LITERAL.fullmatch(domain) else local + domain
    return any(c in "[]\\" for c in outside_literal)


def record_event(
    session: Session,
    ticket: Ticket,
    kind: str,
    actor: Actor | None = None,
    *,
    at: datetime | None = None,
    **data: Any,
) -> None:
    """`at`: when it happened, if not now (a ticket opened from mail that waited in the intake)."""
    session.add(
        TicketEvent(
            ticket_id=ticket.id,
            kind=kind,
            actor=actor.ref if actor else None,
            data=data,
            created_at=at or utcnow(),
        )
    )


def touch(ticket: Ticket, now: datetime | None = None) -> None:
    """The ticket changed now. An action inside a larger change passes that change's `now`: setting
    the time the row already holds (a ticket opened in this transaction) writes nothing."""
    ticket.updated_at = now or utcnow()


def update_card(session: Session, ticket: Ticket) -> None:
    # Until the card is posted it goes first in its thread's lane (the thread hangs from it); an
    # update of a posted card has a lane of its own, so that a card held back (chat.update rate
    # limited) never holds back the thread's posts, another method.
    lane = outbox.triage_lane(ticket.id) if ticket.triage_ts is None else outbox.card_lane(ticket.id)
    outbox.enqueue_once(session, Kind.CARD, ticket_id=ticket.id, lane=lane)


def literal(text: str) -> str:
    """A value a person chose (a name, a file name, a bounce reason) as plain words in a thread line.

    Thread lines are posted to Slack as mrkdwn, where `<!channel>` notifies the whole channel and
    `<url|label>` hides where a link goes: a customer's display name must do neither. Slack's rule
    for literal text is its three control characters as entities.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def thread_line(session: Session, ticket: Ticket, text: str, *, about: Ticket | None = None) -> None:
    """A short line from the desk in the ticket's triage thread, in Slack mrkdwn: values people
    chose go through `literal`. `about`: another ticket the line names as `#<number>`, which is
    posted as a link to that ticket's thread (once it has one)."""
    payload: dict[str, object] = {"text": text}
    if about is not None:
        payload["about"] = {"ticket_id": about.id, "number": about.number}
    outbox.enqueue(
        session,
        Kind.THREAD_LINE,
        ticket_id=ticket.id,
        lane=outbox.triage_lane(ticket.id),
        payload=payload,
    )


def mail_recipients(session: Session, ticket: Ticket) -> list[Participant]:
    """Who gets the ticket's email: requester first, then Cc participants still subscribed."""
    return list(session.scalars(_recipients_query(), {"ticket_id": ticket.id}).all())


# The reads an email ticket makes on every ingest, built once (building a select costs more than
# running it on an index): `session.scalars` still flushes what is pending before each.
@functools.cache
def _recipients_query() -> Select[Participant]:
    return (
        select(Participant)
        .where(
            Participant.ticket_id == bindparam("ticket_id", type_=Ticket.id.type),
            Participant.unsubscribed_at.is_(None),
            Participant.bounced_at.is_(None),
        )
        # "requester" sorts after "cc", so descending puts the requester first.
        .order_by(Participant.role.desc(), Participant.id)
    )


# An email row's dedupe key: this and the Message-ID it is sent under (`EmailId.message_id`).
SENT_MAIL_KEY = "email:"


@functools.cache
def _thread_ids_query() -> Select[str, str, str | None]:
    return (
        select(EmailId.message_id, EmailId.direction, EmailId.recipient)
        .where(EmailId.ticket_id == bindparam("ticket_id", type_=Ticket.id.type))
        .order_by(EmailId.id)
    )


@dataclass(frozen=True)
class MailThread:
    """The Message-IDs of a ticket's mail, in order: (id, "sent" or "received", recipient)."""

    ids: list[tuple[str, str, str | None]]

    def headers_for(self, recipient: str) -> tuple[str | None, list[str]]:
        """In-Reply-To and References that continue `recipient`'s mail thread (RFC 5322 3.6.4).

        Only mail they have: what the desk received, and the copies sent to them. The Message-ID of
        another participant's copy is a bounce's proof of which delivery failed (see
        `mail.ingest_routing.bounced_participants`); shown to someone else, it would let them forge one.
        """
        theirs = [
            message_id
            for message_id, direction, sent_to in self.ids
            if direction == "received" or sent_to == recipient
        ]
        received = next(
            (message_id for message_id, direction, _ in reversed(self.ids) if direction == "received"), None
        )
        in_reply_to = received or (theirs[-1] if theirs else None)
        if in_reply_to in theirs:
            # References are the parent's ancestors and the parent, oldest first (RFC 5322 3.6.4):
            # what the desk sent after the parent (its acknowledgement, earlier answers) are
            # siblings, and listed before it they would claim to be its ancestors.
            theirs = theirs[: theirs.index(in_reply_to) + 1]
        # The first message anchors the thread; the most recent ones keep clients threading. Keep
        # the header bounded however long the ticket gets.
        return in_reply_to, theirs[:1] + theirs[1:][-19:]


def mail_thread(session: Session, ticket: Ticket) -> MailThread:
    rows = session.execute(_thread_ids_query(), {"ticket_id": ticket.id}).all()
    return MailThread([(row.message_id, row.direction, row.recipient) for row in rows])


def enqueue_emails(
    session: Session,
    ticket: Ticket,
    policy: DeskPolicy,
    *,
    template: str,
    message_id: int | None = None,
    only: list[Participant] | None = None,
    due_at: Any = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """One outbox row per recipient, each with its own Message-ID fixed now. Returns the count."""
    if only is not None and not only:
        return 0
    # Read once: the recipients (unless named) and the Cc line every copy shows.
    subscribed = mail_recipients(session, ticket)
    recipients = only if only is not None else subscribed
    if not recipients:
        return 0
    thread = mail_thread(session, ticket)
    everyone = [p.email for p in subscribed]
    for participant in recipients:
        in_reply_to, references = thread.headers_for(participant.email)
        _enqueue_email(
            session,
            ticket,
            policy,
            participant,
            payload={
                "template": template,
                "cc": [address for address in everyone if address != participant.email],
                "in_reply_to": in_reply_to,
                "references": references,
                **(extra or {}),
            },
            message_id=message_id,
            due_at=due_at,
        )
    return len(recipients)


def acknowledge_new_ticket(
    session: Session, ticket: Ticket, policy: DeskPolicy, requester: Participant, received_id: str
) -> None:
    """The acknowledgement of a ticket opened in this transaction by the mail `received_id`.

    `enqueue_emails` without its reads: the requester is still the ticket's only participant (the
    Cc's join after it, so the acknowledgement shows no Cc), and the received mail is the thread's
    only Message-ID. Each read would first flush everything pending.
    """
    if requester.id is None:
        session.flush()  # the payload names the participant's id
    _enqueue_email(
        session,
        ticket,
        policy,
        requester,
        payload={
            "template": "acknowledgement",
            "cc": [],
            "in_reply_to": received_id,
            "references": [received_id],
        },
    )


def _enqueue_email(
    session: Session,
    ticket: Ticket,
    policy: DeskPolicy,
    participant: Participant,
    *,
    payload: dict[str, Any],
    message_id: int | None = None,
    due_at: Any = None,
) -> None:
    """One outbox row for one recipient, with the Message-ID it will be sent under, recorded now."""
    header_id = new_message_id(policy.mail_domain, tag=f"t{ticket.number}")
    session.add(
        EmailId(
            message_id=header_id,
            ticket_id=ticket.id,
            direction="sent",
            recipient=participant.email,
            created_at=utcnow(),
        )
    )
    outbox.enqueue(
        session,
        Kind.EMAIL,
        ticket_id=ticket.id,
        message_id=message_id,
        lane=outbox.mail_lane(ticket.id, participant.email),
        payload={
            "to": participant.email,
            "to_name": participant.name,
            "participant_id": participant.id,
            "message_id_header": header_id,
            **payload,
        },
        dedupe_key=f"{SENT_MAIL_KEY}{header_id}",
        due_at=due_at,
    )


def notify_customer(
    session: Session, ticket: Ticket, policy: DeskPolicy, template: str, **extra: Any
) -> None:
    """A status notice (resolved, closed, reopened, merged): in their Slack thread, and by email to
    the ticket's email participants (a Slack ticket has some after `cc add` or a merge)."""
    for listener in customer_slack_threads(session, ticket):
        outbox.enqueue(
            session,
            Kind.ORIGIN_LINE,
            ticket_id=listener.id,
            lane=outbox.origin_lane(listener.id),
            payload={"template": template, "number": ticket.number, **extra},
        )
    if mail_started(session, ticket):
        enqueue_emails(session, ticket, policy, template=template, extra=extra)


def mail_started(session: Session, ticket: Ticket) -> bool:
    """Whether the customer can be mailed a notice about the ticket.

    A ticket staff opened with `/desk new` has no mail conversation until its first reply is
    written (or a mail received): a notice (resolved, closed) before that would be the first the
    customer hears of it, about a request they never made by email and a reply they never got.
    Any other ticket began with the customer (or a Cc'd participant, who was told on joining).
    A mail the server refused for good (its row failed) reached no one, so it starts nothing: the
    notices would be refused the same way. Sent again (`servicedesk outbox --retry`), it counts.
    """
    if ticket.origin != Origin.STAFF:
        return True
    refused = exists().where(
        Outbox.dedupe_key == SENT_MAIL_KEY + EmailId.message_id,
        Outbox.state == OutboxState.FAILED,
    )
    started = select(EmailId.id).where(
        EmailId.ticket_id == ticket.id, or_(EmailId.direction == "received", ~refused)
    )
    return session.scalar(started.limit(1)) is not None


def customer_slack_threads(session: Session, ticket: Ticket) -> list[Ticket]:
    """The tickets whose customer Slack thread hears this ticket: itself, and any merged into it.

    A merged ticket's customer keeps writing in their own thread (their messages land here), so
    replies and notices must reach that thread too.
    """
    found: list[Ticket] = []
    # A requester already heard in a thread of the same channel (their duplicate merged into their
    # own ticket) is told once: the merge notice sent them on to that thread ("we'll continue there").
    heard: set[tuple[int, str]] = set()
    frontier, seen = [ticket], {ticket.id}
    while frontier:
        current = frontier.pop(0)  # the ticket itself first, then what was merged into it, oldest first
        if current.origin_channel and current.origin_thread_ts:
            hearer = (current.requester_id, current.origin_channel)
            if hearer not in heard:
                heard.add(hearer)
                found.append(current)
        for merged in session.scalars(
            select(Ticket).where(Ticket.merged_into_id == current.id).order_by(Ticket.id)
        ):
            if merged.id not in seen:
                seen.add(merged.id)
                frontier.append(merged)
    return found
