"""The keys the desk issues: in addresses (`+<reply key>`, `+unsub-<key>`, `+bounce-<key>`) and links."""

from __future__ import annotations

import enum
import re
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.actions.common import literal, record_event, thread_line
from store.actions.tickets import follow_merges, participant_on
from store.db import Database
from store.models import Participant, ServiceState, Ticket, utcnow

UNSUBSCRIBE_PREFIX = "unsub-"
BOUNCE_PREFIX = "bounce-"
# Keys are lowercase letters and digits, at least 26 characters (>= 128 random bits).
KEY_PATTERN = re.compile(r"[a-z0-9]{26,64}")  # used with fullmatch


class KeyKind(enum.Enum):
    REPLY = "reply"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    UNKNOWN = "unknown"


def split_address_key(plus_part: str) -> tuple[KeyKind, str]:
    """What kind of key an address's `+` part claims to be, and the key (not yet checked)."""
    plus_part = plus_part.lower()
    for prefix, kind in ((UNSUBSCRIBE_PREFIX, KeyKind.UNSUBSCRIBE), (BOUNCE_PREFIX, KeyKind.BOUNCE)):
        if plus_part.startswith(prefix):
            key = plus_part.removeprefix(prefix)
            return (kind, key) if KEY_PATTERN.fullmatch(key) else (KeyKind.UNKNOWN, "")
    return (KeyKind.REPLY, plus_part) if KEY_PATTERN.fullmatch(plus_part) else (KeyKind.UNKNOWN, "")


def lookup_address_key(db: Database, plus_part: str) -> KeyKind:
    """The kind of a `+` part if the desk issued it; UNKNOWN for anything else."""
    kind, key = split_address_key(plus_part)
    if kind is KeyKind.UNKNOWN:
        return kind
    with db.read() as session:
        if kind is KeyKind.REPLY:
            found = session.scalar(select(Ticket.id).where(Ticket.reply_key == key))
        else:
            found = session.scalar(select(Participant.id).where(Participant.unsubscribe_key == key))
    return kind if found is not None else KeyKind.UNKNOWN


def _keyed_address(support_address: str, prefix: str, key: str) -> str:
    """`local+<prefix><key>@domain` (RFC 5233 subaddress); ValueError for a key the desk never issues."""
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError("a key is 26 to 64 lowercase letters and digits")
    local, _, domain = support_address.partition("@")
    return f"{local}+{prefix}{key}@{domain}"


def reply_address(support_address: str, reply_key: str) -> str:
    """Where a customer's reply goes: it routes the mail to one ticket."""
    return _keyed_address(support_address, "", reply_key)


def unsubscribe_address(support_address: str, key: str) -> str:
    return _keyed_address(support_address, UNSUBSCRIBE_PREFIX, key)


def bounce_address(support_address: str, key: str) -> str:
    """The envelope sender of the desk's mail to one participant (VERP): bounces name them."""
    return _keyed_address(support_address, BOUNCE_PREFIX, key)


# ----- the secret that signs links the desk hands out (original message, large attachments) -----

LINK_SECRET_STATE = "link_secret"


def link_secret(db: Database) -> bytes:
    """The desk's random secret for signing links, made once and shared through the database.

    Every process (web, worker) of one desk reads the same value, so a link the worker wrote into a
    thread or an email is verified by whichever web process serves it; nothing is configured.
    """
    with db.read() as session:
        state = session.get(ServiceState, LINK_SECRET_STATE)
        if state is not None:
            return bytes.fromhex(str(state.value["secret"]))
    try:
        with db.transaction() as session:
            session.add(
                ServiceState(
                    key=LINK_SECRET_STATE, value={"secret": secrets.token_hex(32)}, updated_at=utcnow()
                )
            )
    except IntegrityError:
        pass  # another process made it first: use theirs
    with db.read() as session:
        state = session.get(ServiceState, LINK_SECRET_STATE)
        assert state is not None
        return bytes.fromhex(str(state.value["secret"]))


# ----- what an unsubscribe key does -----


def participant_by_key(session: Session, key: str) -> Participant | None:
    """Whom a participant key (in an unsubscribe link or a bounce address) names now.

    A merge keeps the merged-away ticket's participant when the ticket it went into had the same
    address already, so the keys in mail sent before the merge still work: they name the participant
    on the ticket the conversation continues on.
    """
    key = key.lower()
    if not KEY_PATTERN.fullmatch(key):
        return None  # never issued; and PostgreSQL refuses some text (a NUL) outright
    participant = session.scalar(select(Participant).where(Participant.unsubscribe_key == key))
    if participant is None:
        return None
    ticket = session.get(Ticket, participant.ticket_id)
    if ticket is None or ticket.merged_into_id is None:
        return participant
    live = follow_merges(session, ticket)
    if live is None:
        return participant
    return participant_on(session, live.id, participant.email) or participant


def unsubscribe_by_key(session: Session, key: str, *, via: str) -> Participant | None:
    """Stop a participant's mail for one ticket (RFC 2369 / RFC 8058); None for an unknown key.

    Idempotent: mail clients send the one-click POST more than once, and people click twice.
    """
    participant = participant_by_key(session, key)
    if participant is None or participant.unsubscribed_at is not None:
        return participant
    participant.unsubscribed_at = utcnow()
    ticket = session.get(Ticket, participant.ticket_id)
    if ticket is not None:
        record_event(session, ticket, "unsubscribed", None, email=participant.email, via=via)
        line = f"{literal(participant.email)} unsubscribed from this ticket's email ({via})."
        thread_line(session, ticket, line)
    return participant
