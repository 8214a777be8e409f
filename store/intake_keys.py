"""The keys the desk issues in addresses: `+<reply key>`, `+unsub-<key>`, `+bounce-<key>`."""

from __future__ import annotations

import enum
import re

from sqlalchemy import select

from store.db import Database
from store.models import Participant, Ticket

UNSUBSCRIBE_PREFIX = "unsub-"
BOUNCE_PREFIX = "bounce-"
# Keys are lowercase letters and digits, at least 26 characters (>= 128 random bits).
KEY_PATTERN = re.compile(r"^[a-z0-9]{26,64}$")


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
            return (kind, key) if KEY_PATTERN.match(key) else (KeyKind.UNKNOWN, "")
    return (KeyKind.REPLY, plus_part) if KEY_PATTERN.match(plus_part) else (KeyKind.UNKNOWN, "")


def lookup_address_key(db: Database, plus_part: str) -> KeyKind:
    """The kind of a `+` part if the desk issued it; UNKNOWN for anything else."""
    kind, key = split_address_key(plus_part)
    if kind is KeyKind.UNKNOWN:
        return kind
    with db.transaction() as session:
        if kind is KeyKind.REPLY:
            found = session.scalar(select(Ticket.id).where(Ticket.reply_key == key))
        else:
            found = session.scalar(select(Participant.id).where(Participant.unsubscribe_key == key))
    return kind if found is not None else KeyKind.UNKNOWN


def reply_address(support_address: str, reply_key: str) -> str:
    local, _, domain = support_address.partition("@")
    return f"{local}+{reply_key}@{domain}"


def unsubscribe_address(support_address: str, key: str) -> str:
    local, _, domain = support_address.partition("@")
    return f"{local}+{UNSUBSCRIBE_PREFIX}{key}@{domain}"


def bounce_address(support_address: str, key: str) -> str:
    local, _, domain = support_address.partition("@")
    return f"{local}+{BOUNCE_PREFIX}{key}@{domain}"
