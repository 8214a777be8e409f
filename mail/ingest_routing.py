"""Where an inbound email belongs: the keys in its addresses, the ticket it continues, its bounces.

Pure lookups over the store (no writes), used by `mail.ingest` inside its one transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from mail.addresses import extract_reply_key, split_support_address
from mail.parse import InboundEmail
from store.actions import follow_merges, ticket_by_email_ids, ticket_by_reply_key
from store.intake_keys import KeyKind, participant_by_key, split_address_key
from store.models import EmailId, Outbox, Ticket


@dataclass(frozen=True)
class EnvelopeKeys:
    """The desk's keys among the envelope recipients (checked at RCPT, so each one was issued)."""

    reply: tuple[str, ...]
    unsubscribe: tuple[str, ...]
    bounce: tuple[str, ...]


def envelope_keys(rcpt_tos: Iterable[str], support_address: str) -> EnvelopeKeys:
    found: dict[KeyKind, list[str]] = {KeyKind.REPLY: [], KeyKind.UNSUBSCRIBE: [], KeyKind.BOUNCE: []}
    for rcpt in rcpt_tos:
        ours, plus_part = split_support_address(rcpt, support_address)
        if not ours or plus_part is None:
            continue
        kind, key = split_address_key(plus_part)
        if kind in found and key not in found[kind]:
            found[kind].append(key)
    return EnvelopeKeys(
        tuple(found[KeyKind.REPLY]), tuple(found[KeyKind.UNSUBSCRIBE]), tuple(found[KeyKind.BOUNCE])
    )


def find_ticket(
    session: Session, email: InboundEmail, reply_keys: Sequence[str], support_address: str
) -> Ticket | None:
    """The ticket a message continues (DESIGN "Email in" 4), or None for a new request.

    First the reply key in the envelope (the only place a Bcc'd copy carries it), then in the
    recipient headers, then In-Reply-To and References (RFC 5322 3.6.4) against every Message-ID
    we sent or received, newest reference first.
    """
    for key in reply_keys:
        ticket = ticket_by_reply_key(session, key)
        if ticket is not None:
            return ticket
    for address in (*email.to, *email.cc, *email.delivered_to):
        header_key = extract_reply_key(address, support_address)
        ticket = ticket_by_reply_key(session, header_key) if header_key is not None else None
        if ticket is not None:
            return ticket
    ids = [*email.in_reply_to, *reversed(email.references)]
    return ticket_by_email_ids(session, list(dict.fromkeys(ids))) if ids else None


def already_known(session: Session, message_id: str) -> bool:
    """A Message-ID we stored or sent before: a redelivery, or our own mail come back."""
    return session.scalar(_known_query(), {"message_id": message_id}) is not None


@functools.cache
def _known_query() -> Select[int]:
    return select(EmailId.id).where(EmailId.message_id == bindparam("message_id"))


@dataclass(frozen=True)
class BouncedMail:
    ticket: Ticket
    email: str


def bounced_participants(
    session: Session, email: InboundEmail, bounce_keys: Sequence[str]
) -> list[BouncedMail]:
    """Which of our recipients a bounce is about: by the `+bounce-<key>` it was sent to (VERP), else
    by the returned message's Message-ID, which names the one outbox row (and recipient) it was."""
    found: list[BouncedMail] = []
    for key in bounce_keys:
        participant = participant_by_key(session, key)
        ticket = session.get(Ticket, participant.ticket_id) if participant is not None else None
        if participant is not None and ticket is not None:
            found.append(BouncedMail(ticket, participant.email))
    if found or email.bounce is None:
        return found
    for message_id in email.bounce.original_message_ids:
        row = session.scalar(select(Outbox).where(Outbox.dedupe_key == f"email:{message_id}"))
        if row is None or row.ticket_id is None:
            continue
        # Its participants, and its thread, moved to the ticket it was merged into (if it was).
        ticket = follow_merges(session, session.get(Ticket, row.ticket_id))
        recipient = str(row.payload.get("to") or "")
        if ticket is not None and recipient:
            found.append(BouncedMail(ticket, recipient))
    return found
