"""What the Slack performers read from the store, and what they write back when a row is done.

Reads run in a thread, each in one short read-only transaction (`Database.read()`: on SQLite it
runs beside the writer instead of queueing for the write lock), and return plain snapshots: nothing here
holds a transaction while Slack is called, and what is sent is the store as it is at delivery
time (an edit made during the undo window is what the customer sees).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Update, bindparam, or_, select, update
from sqlalchemy.orm import Session

from bot.blocks.data import CardView
from bot.cards import card_view
from bot.slack_users import profile_from_row
from store import outbox
from store.actions.common import update_card
from store.db import Database
from store.models import (
    Attachment,
    Customer,
    Direction,
    Message,
    Outbox,
    OutboxState,
    SlackUser,
    Ticket,
    TicketEvent,
)


@dataclass(frozen=True)
class TicketThreads:
    id: int
    number: int
    triage_channel: str | None
    triage_ts: str | None
    origin_channel: str | None
    origin_thread_ts: str | None


@dataclass(frozen=True)
class CardSnapshot:
    threads: TicketThreads
    view: CardView
    # The card posted again in the thread, its first one having been deleted in Slack (None: the
    # card is the message the thread hangs from).
    card_in_thread_ts: str | None = None


# The ticket event recording a card posted again in its thread (its `ts`); the latest one is the
# card kept up to date. An event, not a column: the trail keeps it, and no schema change is needed.
CARD_POSTED_AGAIN = "card_posted_again"


@dataclass(frozen=True)
class FileToSend:
    attachment_id: int
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class MessageSnapshot:
    id: int
    threads: TicketThreads
    direction: str
    visibility: str
    source: str
    author_name: str
    author_slack_id: str | None
    author_email: str | None
    body_markdown: str
    raw_sha256: str | None  # an email's original .eml in the file store
    deleted: bool
    delivery: str | None
    mirror_channel: str | None
    mirror_ts: str | None
    files: tuple[FileToSend, ...]

    @property
    def uploads(self) -> tuple[FileToSend, ...]:
        """The files to upload to Slack: an empty one is refused there (`files.getUploadURLExternal`
        takes a length of 0 for a missing one) and would fail the whole post."""
        return tuple(file for file in self.files if file.size > 0)

    @property
    def empty_files(self) -> list[str]:
        return [file.filename for file in self.files if file.size == 0]


@dataclass(frozen=True)
class StaffIdentity:
    """How a staff member appears when the bot posts on their behalf."""

    name: str
    icon_url: str | None


def _threads(ticket: Ticket) -> TicketThreads:
    return TicketThreads(
        id=ticket.id,
        number=ticket.number,
        triage_channel=ticket.triage_channel,
        triage_ts=ticket.triage_ts,
        origin_channel=ticket.origin_channel,
        origin_thread_ts=ticket.origin_thread_ts,
    )


def read_threads(db: Database, ticket_id: int) -> TicketThreads | None:
    with db.read() as session:
        ticket = session.get(Ticket, ticket_id)
        return _threads(ticket) if ticket is not None else None


def read_card(db: Database, ticket_id: int) -> CardSnapshot | None:
    with db.read() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            return None
        return CardSnapshot(
            threads=_threads(ticket),
            view=card_view(session, ticket),
            card_in_thread_ts=_card_posted_again(session, ticket),
        )


def _card_posted_again(session: Session, ticket: Ticket) -> str | None:
    data = session.scalar(
        select(TicketEvent.data)
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == CARD_POSTED_AGAIN)
        .order_by(TicketEvent.id.desc())
        .limit(1)
    )
    if not data or data.get("channel") != ticket.triage_channel:
        return None  # never posted again, or posted again in a triage channel left since
    ts = data.get("ts")
    return ts if isinstance(ts, str) else None


def read_message(db: Database, message_id: int) -> MessageSnapshot | None:
    with db.read() as session:
        # Core rows on the connection: every copy posted reads this, and two statements built once
        # cost less than loading the message, its ticket and its author as objects.
        connection = session.connection()
        found = connection.execute(_message_query(), {"message_id": message_id}).first()
        if found is None:
            return None
        files = connection.execute(_files_query(), {"message_id": message_id}).all()
        return MessageSnapshot(
            id=found.id,
            # A merged ticket's messages moved with it: post where the message lives now.
            threads=TicketThreads(
                id=found.ticket_id,
                number=found.number,
                triage_channel=found.triage_channel,
                triage_ts=found.triage_ts,
                origin_channel=found.origin_channel,
                origin_thread_ts=found.origin_thread_ts,
            ),
            direction=found.direction,
            visibility=found.visibility,
            source=found.source,
            author_name=found.author_name,
            author_slack_id=found.author_slack_id,
            author_email=found.author_email,
            body_markdown=found.body_markdown,
            raw_sha256=found.raw_sha256,
            deleted=found.deleted_at is not None,
            delivery=found.delivery,
            mirror_channel=found.mirror_channel,
            mirror_ts=found.mirror_ts,
            files=tuple(
                FileToSend(
                    attachment_id=file.id,
                    filename=file.filename,
                    content_type=file.content_type,
                    size=file.size,
                    sha256=file.sha256,
                )
                for file in files
            ),
        )


@functools.cache
def _message_query() -> Select[*tuple[Any, ...]]:
    return (
        select(
            Message.id,
            Message.direction,
            Message.visibility,
            Message.source,
            Message.author_name,
            Message.author_slack_id,
            Message.body_markdown,
            Message.raw_sha256,
            Message.deleted_at,
            Message.delivery,
            Message.mirror_channel,
            Message.mirror_ts,
            Ticket.id.label("ticket_id"),
            Ticket.number,
            Ticket.triage_channel,
            Ticket.triage_ts,
            Ticket.origin_channel,
            Ticket.origin_thread_ts,
            Customer.email.label("author_email"),
        )
        .join(Ticket, Ticket.id == Message.ticket_id)
        .outerjoin(Customer, Customer.id == Message.author_customer_id)
        .where(Message.id == bindparam("message_id"))
    )


@functools.cache
def _files_query() -> Select[int, str, str, int, str]:
    return (
        select(
            Attachment.id, Attachment.filename, Attachment.content_type, Attachment.size, Attachment.sha256
        )
        .where(Attachment.message_id == bindparam("message_id"))
        .order_by(Attachment.id)
    )


def posted_parts(db: Database, message_id: int, kinds: Iterable[str]) -> list[str]:
    """The ts of every part a message's copy was posted as (a long message is several posts)."""
    with db.read() as session:
        rows = session.scalars(
            select(Outbox)
            .where(
                Outbox.message_id == message_id,
                Outbox.kind.in_(list(kinds)),
                Outbox.state == OutboxState.DONE,
            )
            .order_by(Outbox.id)
        ).all()
        for row in rows:
            parts = outbox.posted_parts(row.result or {})
            if parts:
                return parts
    return []


def customers_in_channel(db: Database, ticket_ids: Iterable[int], channel: str) -> list[str]:
    """The Slack users who wrote on these tickets in this (customer) channel: members of it."""
    with db.read() as session:
        found = session.scalars(
            select(Customer.slack_user_id)
            .join(Message, Message.author_customer_id == Customer.id)
            .where(
                Message.ticket_id.in_(list(ticket_ids)),
                Message.slack_channel == channel,
                Message.direction == Direction.INBOUND,
                Customer.slack_user_id.is_not(None),
            )
            .distinct()
        ).all()
    return [user for user in found if user]


def longer_names(db: Database, names: Iterable[str]) -> list[str]:
    """The shown names of other people that begin with one of `names` and go on after a space
    (`Bob Baker` for `Bob`): a reply naming `@Bob Baker` names that person, not `Bob`."""
    wanted = [name for name in names if name.strip()]
    if not wanted:
        return []
    starts = [
        column.startswith(f"{name} ", autoescape=True)
        for name in wanted
        for column in (SlackUser.display_name, SlackUser.real_name)
    ]
    with db.read() as session:
        rows = session.scalars(select(SlackUser).where(or_(*starts))).all()
        shown = {profile_from_row(row).shown_name for row in rows}
    return sorted(name for name in shown if any(name.startswith(f"{short} ") for short in wanted))


# ----- written in the transaction that marks a row done -----


def record_triage_thread(ticket_id: int, channel: str, ts: str) -> Callable[[Session], None]:
    def apply(session: Session) -> None:
        # The first card's ts stays the thread: an update to a ticket already posted changes nothing.
        session.connection().execute(
            _first_thread_statement(), {"ticket_id": ticket_id, "channel": channel, "ts": ts}
        )

    return apply


def record_card_posted_again(ticket_id: int, channel: str, ts: str) -> Callable[[Session], None]:
    """The card went up again in its thread: later updates edit that one."""

    def apply(session: Session) -> None:
        session.add(
            TicketEvent(ticket_id=ticket_id, kind=CARD_POSTED_AGAIN, data={"channel": channel, "ts": ts})
        )

    return apply


def card_update_on_its_own(ticket_id: int) -> Callable[[Session], None]:
    """A card update queued in the thread's lane while the first card was being posted: it goes
    on in the card's own lane (`update_card`), where a 429 on `chat.update` holds only the card."""

    def apply(session: Session) -> None:
        ticket = session.get(Ticket, ticket_id)
        if ticket is not None:
            update_card(session, ticket)

    return apply


def record_copy(
    message_id: int, channel: str | None, ts: str | None, file_ids: dict[int, str]
) -> Callable[[Session], None]:
    """The copy the desk posted of a message, and the Slack file ids of its attachments."""

    def apply(session: Session) -> None:
        # Core updates on the connection, as marking the row done: nothing here loads an object.
        connection = session.connection()
        if channel and ts:
            connection.execute(
                _first_copy_statement(), {"message_id": message_id, "channel": channel, "ts": ts}
            )
        for attachment_id, file_id in file_ids.items():
            connection.execute(
                update(Attachment).where(Attachment.id == attachment_id).values(slack_file_id=file_id)
            )

    return apply


@functools.cache
def _first_thread_statement() -> Update:
    return (
        update(Ticket)
        .where(Ticket.id == bindparam("ticket_id"), or_(Ticket.triage_ts.is_(None), Ticket.triage_ts == ""))
        .values(triage_channel=bindparam("channel"), triage_ts=bindparam("ts"))
    )


@functools.cache
def _first_copy_statement() -> Update:
    return (
        update(Message)
        .where(
            Message.id == bindparam("message_id"), or_(Message.mirror_ts.is_(None), Message.mirror_ts == "")
        )
        .values(mirror_channel=bindparam("channel"), mirror_ts=bindparam("ts"))
    )
