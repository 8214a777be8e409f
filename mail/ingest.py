"""Inbound email, worker side: one intake-queue item becomes a ticket message (or is set aside).

The SMTP intake stored the raw bytes and answered 250. Here the mail is parsed off the event loop,
its raw .eml and attachments are written to the file store (content-addressed, so a retry writes
nothing new), and then ONE transaction decides and applies everything: classification, the ticket
it continues or a new one, the message, its participants, the acknowledgement, and marking the
intake item done. If the worker dies halfway, the transaction never happened and the item is
claimed again; if it runs twice, the Message-ID is already known and nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mail.addresses import is_own_address, normalize_address
from mail.ingest_routing import (
    EnvelopeKeys,
    already_known,
    bounced_participants,
    envelope_keys,
    find_ticket,
)
from mail.parse import InboundEmail, parse_email
from store import inbound
from store.actions import (
    Actor,
    NewAttachment,
    add_customer_message,
    add_participant,
    customer_for_email,
    record_bounce,
)
from store.actions.common import acknowledge_new_ticket, literal, record_event, thread_line
from store.actions.tickets import (
    TicketParticipants,
    clear_bounce,
    participant_on,
    participants_of,
    participants_of_new_ticket,
    start_ticket,
)
from store.context import Desk
from store.db import InvalidRequest
from store.intake_keys import unsubscribe_by_key
from store.models import Customer, InboundItem, Origin, Ticket

log = logging.getLogger(__name__)

# At most this many files of one mail are kept and uploaded; the rest are named in the thread.
MAX_ATTACHMENTS = 50
# Addresses named in the thread when the participant cap is reached (10,000 Cc's name 20).
MAX_NAMED_OVERFLOW = 20
# At most this many acknowledgements to one sender within the window: beyond it, new tickets from
# them are opened without one (see `EmailIngest.open`). A person rarely opens five tickets an hour.
ACKNOWLEDGEMENTS_PER_HOUR = 5
ACKNOWLEDGEMENT_WINDOW = timedelta(hours=1)
NO_TEXT = "_(This email has no readable text. The original message is kept as it arrived.)_"
NO_TEXT_ATTACHMENTS = "_(This email has no text, only attachments.)_"


class LostClaim(Exception):
    """Another worker took the intake item over (our lease lapsed): this transaction must not count."""


@dataclass(frozen=True)
class Envelope:
    """What the SMTP dialogue said: MAIL FROM ("" for the null path) and the accepted RCPT TOs."""

    mail_from: str
    rcpt_tos: tuple[str, ...]


@dataclass(frozen=True)
class StoredFiles:
    raw_sha256: str
    attachments: tuple[NewAttachment, ...]
    dropped: tuple[str, ...]  # names of attachments past MAX_ATTACHMENTS


class EmailIngest:
    """The intake-queue handler for kind "email"."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def handle(self, work: inbound.InboundWork, worker_id: str) -> None:
        raw = work.raw or b""
        envelope = Envelope(
            mail_from=str(work.payload.get("mail_from", "")),
            rcpt_tos=tuple(str(address) for address in work.payload.get("rcpt_tos", [])),
        )
        # Parsing a hostile message can take a while: never on the event loop. Parse, files and
        # transaction go in one thread hop: each hop is a hand-over to a pool thread and back.
        email, outcome = await asyncio.to_thread(self.ingest, work.id, worker_id, raw, envelope)
        log.info(
            "inbound email %s: %s",
            email.message_id,
            outcome,
            extra={"inbound_id": work.id, "rule": email.guard_rule or None},
        )

    def ingest(
        self, work_id: int, worker_id: str, raw: bytes, envelope: Envelope
    ) -> tuple[InboundEmail, str]:
        """Parse, keep the files, apply: the whole of one email, in the calling (pool) thread."""
        email = parse_email(raw, envelope_from=envelope.mail_from)
        files = self.store_files(raw, email)
        return email, self.apply(work_id, worker_id, email, envelope, files)

    def store_files(self, raw: bytes, email: InboundEmail) -> StoredFiles:
        """The raw .eml and the attachments, under their content hashes (never customer names)."""
        kept = email.attachments[:MAX_ATTACHMENTS]
        attachments = tuple(
            NewAttachment(
                filename=item.filename,
                content_type=item.content_type,
                size=len(item.data),
                sha256=self.desk.files.put(item.data),
                inline=item.inline,
            )
            for item in kept
        )
        dropped = tuple(item.filename for item in email.attachments[MAX_ATTACHMENTS:])
        return StoredFiles(self.desk.files.put(raw), attachments, dropped)

    def apply(
        self, work_id: int, worker_id: str, email: InboundEmail, envelope: Envelope, files: StoredFiles
    ) -> str:
        """Everything in one transaction; returns what happened, for the log."""
        with self.desk.db.transaction() as session:
            # A new ticket is opened when its mail arrived (answered 250), not when a worker got to it.
            arrived = session.scalar(select(InboundItem.received_at).where(InboundItem.id == work_id))
            outcome = self.route(session, email, envelope, files, arrived=arrived)
            if not inbound.finish(session, work_id, worker_id):
                raise LostClaim(f"intake item {work_id} was taken over by another worker")
            return outcome

    # ----- deciding -----

    def route(
        self,
        session: Session,
        email: InboundEmail,
        envelope: Envelope,
        files: StoredFiles,
        *,
        arrived: datetime | None = None,
    ) -> str:
        support = self.desk.settings.support_address
        keys = envelope_keys(envelope.rcpt_tos, support)
        if already_known(session, email.message_id):
            return "ignored: a Message-ID already stored or sent by us (redelivery or our own mail)"
        if email.from_address is not None and is_own_address(email.from_address, support):
            return "ignored: from our own address (a loop)"
        if keys.unsubscribe:
            return self.unsubscribe(session, keys)
        if keys.bounce or email.classification == "bounce":
            return self.bounce(session, email, keys)
        if email.classification != "request":
            # RFC 3834: answering automatic mail is how loops start; it opens nothing.
            return f"ignored: {email.classification} ({email.guard_rule})"
        ticket = find_ticket(session, email, keys.reply, support)
        if ticket is None:
            ticket = self.open(session, email, envelope, files, arrived=arrived)
            return f"opened #{ticket.number}"
        self.add_message(session, ticket, self.customer(session, email, envelope), email, files)
        self.add_participants(session, ticket, email, include_sender=True)
        return f"added to #{ticket.number}"

    def unsubscribe(self, session: Session, keys: EnvelopeKeys) -> str:
        done = [unsubscribe_by_key(session, key, via="email") for key in keys.unsubscribe]
        emails = [participant.email for participant in done if participant is not None]
        return f"unsubscribed {', '.join(emails) or 'nobody'}"

    def bounce(self, session: Session, email: InboundEmail, keys: EnvelopeKeys) -> str:
        if email.classification != "bounce":
            # An out-of-office or a stray message sent to a bounce address: nothing failed.
            return f"ignored: {email.classification} to a bounce address ({email.guard_rule})"
        info = email.bounce
        if info is not None and not is_final_failure(info.action, info.status):
            # RFC 3464 "delayed" (or "delivered", "relayed"): nothing failed yet, or nothing failed.
            return f"ignored: a delay notice ({info.action or info.status})"
        reason = (info.diagnostic or info.status if info else None) or "the recipient's server refused it"
        bounced = bounced_participants(session, email, keys.bounce)
        for item in bounced:
            record_bounce(session, item.ticket, item.email, reason)
        if not bounced:
            return "ignored: a bounce of no mail of ours"
        return "bounce recorded for " + ", ".join(f"{b.email} on #{b.ticket.number}" for b in bounced)

    # ----- applying -----

    def customer(self, session: Session, email: InboundEmail, envelope: Envelope) -> Customer:
        address = answer_address(email, self.desk.settings.support_address)
        if address is not None and address != email.from_address:
            return customer_for_email(session, address, email.name_of(address))
        if email.from_address is not None:
            return customer_for_email(session, email.from_address, email.from_name)
        # RFC 5322 requires a From; without a readable one the envelope sender is the only way back.
        sender = normalize_address(envelope.mail_from)
        if sender is not None and not is_own_address(sender, self.desk.settings.support_address):
            return customer_for_email(session, sender, email.from_name)
        # Nobody to answer by mail: the ticket still holds the message for the team to see.
        customer = Customer(name=email.from_name or "Unknown sender", email=None)
        session.add(customer)
        session.flush()
        return customer

    def open(
        self,
        session: Session,
        email: InboundEmail,
        envelope: Envelope,
        files: StoredFiles,
        *,
        arrived: datetime | None = None,
    ) -> Ticket:
        customer = self.customer(session, email, envelope)
        ticket, requester = start_ticket(
            session,
            self.desk.policy,
            subject=email.subject,
            requester=customer,
            origin=Origin.EMAIL,
            actor=Actor(customer.name, email=customer.email),
            now=arrived,
        )
        # The whole change happens at the ticket's own time, so the message and the Cc's joining do
        # not write the new ticket's updated_at again.
        now = ticket.created_at
        self.add_message(session, ticket, customer, email, files, now=now)
        if self.desk.policy.acknowledge and not email.auto_reply_suppressed and requester is not None:
            opened = tickets_opened_lately(session, customer, ticket)
            if opened >= ACKNOWLEDGEMENTS_PER_HOUR:
                # An autoresponder without RFC 3834's headers answers each acknowledgement with a
                # new mail, which opens a ticket and is acknowledged again: a mail loop. Not
                # answering is what ends it (RFC 3834 section 2: not to one sender too often).
                thread_line(
                    session,
                    ticket,
                    f"No acknowledgement sent: {literal(requester.email)} opened {opened} tickets by email "
                    "in the last hour (a mail loop, perhaps). The ticket is kept.",
                )
            else:
                # Only the requester: the Cc'd people saw the mail itself, and the acknowledgement
                # goes out before they are participants so it does not show them a Cc they did not get.
                acknowledge_new_ticket(session, ticket, self.desk.policy, requester, email.message_id)
        known = participants_of_new_ticket(requester)
        self.add_participants(session, ticket, email, include_sender=False, known=known, now=now)
        return ticket

    def add_message(
        self,
        session: Session,
        ticket: Ticket,
        customer: Customer,
        email: InboundEmail,
        files: StoredFiles,
        *,
        now: datetime | None = None,
    ) -> None:
        body = email.reply_markdown if email.reply_markdown.strip() else email.body_markdown
        if not body.strip():
            # Only attachments, or nothing readable (a mangled structure cut at a limit): the thread
            # says so instead of showing an empty message.
            body = NO_TEXT_ATTACHMENTS if files.attachments else NO_TEXT
        add_customer_message(
            session,
            self.desk.policy,
            ticket,
            customer=customer,
            body_markdown=body,
            full_markdown=email.body_markdown,
            source="email",
            subject=email.subject,
            email_message_id=email.message_id,
            raw_sha256=files.raw_sha256,
            attachments=list(files.attachments),
            now=now,
        )
        if files.dropped:
            names = ", ".join(literal(name) for name in files.dropped[:MAX_NAMED_OVERFLOW])
            more = len(files.dropped) - MAX_NAMED_OVERFLOW
            thread_line(
                session,
                ticket,
                f"{len(files.dropped)} more attachments were not uploaded (limit {MAX_ATTACHMENTS}): "
                f"{names}{f' and {more} more' if more > 0 else ''}. The original message has them all.",
            )

    def add_participants(
        self,
        session: Session,
        ticket: Ticket,
        email: InboundEmail,
        *,
        include_sender: bool,
        known: TicketParticipants | None = None,
        now: datetime | None = None,
    ) -> None:
        """Every Cc address except our own becomes a participant, up to the cap, and the To addresses
        when the mail was visibly addressed to us (docs/email.md, "Participants").

        A copy not visibly addressed to us came through an alias that forwards to the desk (its To
        is the alias, which mailed would loop) or as a Bcc (its To is whom the sender wrote to).
        """
        support = self.desk.settings.support_address
        sender = answer_address(email, support)
        visible = any(is_own_address(address, support) for address in (*email.to, *email.cc))
        candidates = [*email.to, *email.cc] if visible else [*email.cc]
        if include_sender and sender is not None:
            candidates.insert(0, sender)
        if known is None:
            # Read once for all addresses: who is on the ticket already, and how many Cc's it has.
            known = participants_of(session, ticket)
        if include_sender and sender in known.bounced:
            clear_bounce(session, ticket, sender)
        if include_sender and sender in known.emails:
            resubscribe_sender(session, ticket, sender)
        new = [
            address
            for address in dict.fromkeys(candidates)
            if address not in known.emails and not is_own_address(address, support)
        ]
        if not new:
            return
        room = max(self.desk.policy.max_participants - known.cc_count, 0)
        actor = Actor(email.from_name or "customer", email=email.from_address)
        for address in new[:room]:
            try:
                # Notified by nobody: they were on the mail itself, and know the ticket from it.
                add_participant(
                    session,
                    self.desk.policy,
                    ticket,
                    address,
                    actor,
                    name=participant_name(email, address),
                    notify=False,
                    known=known,
                    now=now,
                )
            except InvalidRequest as exc:
                log.info("not a participant address %r: %s", address, exc)
        overflow = new[room:]
        if overflow:
            self.name_overflow(session, ticket, overflow)

    def name_overflow(self, session: Session, ticket: Ticket, overflow: list[str]) -> None:
        limit = self.desk.policy.max_participants
        record_event(session, ticket, "participants_capped", None, count=len(overflow), limit=limit)
        named = ", ".join(literal(address) for address in overflow[:MAX_NAMED_OVERFLOW])
        more = len(overflow) - MAX_NAMED_OVERFLOW
        thread_line(
            session,
            ticket,
            f"Not added as participants (limit of {limit} reached), so not mailed: "
            f"{named}{f' and {more} more' if more > 0 else ''}.",
        )


def participant_name(email: InboundEmail, address: str) -> str:
    """The name `address` goes by in this mail: its display name in To, Cc or Reply-To, or in From
    for the sender who joins by writing in (they are answered by it)."""
    return email.name_of(address) or (email.from_name if address == email.from_address else "")


def answer_address(email: InboundEmail, support_address: str) -> str | None:
    """Where the sender wants answers: the one `Reply-To` address (RFC 5322 3.6.2), else `From`.

    A web form or a mailing service sends from its own no-reply address and names the person in
    Reply-To; answering From would send the acknowledgement and every reply to nobody. Several
    Reply-To addresses name no one person, and our own address there is a loop: `From` then. So
    is a mailing list's Reply-To pointing at the list itself (a recipient of the mail), whose
    members would all get what was meant for the writer; a list that names the writer there (as
    lists rewriting From for DMARC do) is followed.
    """
    if len(email.reply_to) != 1:
        return email.from_address
    address = email.reply_to[0]
    to_the_list = email.mailing_list and address in (*email.to, *email.cc)
    if is_own_address(address, support_address) or to_the_list:
        return email.from_address
    return address


def is_final_failure(action: str | None, status: str | None) -> bool:
    """Whether a delivery report says the mail will never arrive (RFC 3464 section 2.3.3).

    `Action: failed` is final whatever the status class: a relay that gave up after its queue
    lifetime (Postfix: 5 days of "connection timed out") reports the last, temporary, status
    (4.4.1, 4.4.7) with it. Without an action (a plain-text bounce), a 4.x.x status is a delay.
    """
    if action is not None:
        return action == "failed"
    return (status or "5")[0] != "4"


def tickets_opened_lately(session: Session, customer: Customer, ticket: Ticket) -> int:
    """How many other tickets this customer opened by email within the last hour."""
    since = ticket.created_at - ACKNOWLEDGEMENT_WINDOW
    return int(
        session.scalar(
            select(func.count())
            .select_from(Ticket)
            .where(
                Ticket.requester_id == customer.id,
                Ticket.origin == Origin.EMAIL,
                Ticket.created_at >= since,
                Ticket.id != ticket.id,
            )
        )
        or 0
    )


def resubscribe_sender(session: Session, ticket: Ticket, email: str) -> None:
    """A participant who unsubscribed wrote on the ticket themself: they want its answer, so mail to
    them goes out again (as for a participant whose mail bounced, `clear_bounce`)."""
    participant = participant_on(session, ticket.id, email)
    if participant is None or participant.unsubscribed_at is None:
        return
    participant.unsubscribed_at = None
    record_event(session, ticket, "unsubscribe_cleared", None, email=email)
    thread_line(
        session, ticket, f"{literal(email)} wrote in again after unsubscribing: mail to them goes out again."
    )
