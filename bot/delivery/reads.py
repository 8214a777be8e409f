"""What the Slack performers read from the store, and what they write back when a row is done.

Reads run in a thread, each in one short read-only transaction (`Database.read()`: on SQLite it
runs beside the writer instead of queueing for the write lock), and return plain snapshots: nothing here
holds a transaction while Slack is called, and what is sent is the store as it is at delivery
time (an edit made during the undo window is what the customer sees).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks.data import CardView
from bot.cards import card_view
from store.db import Database
from store.models import Attachment, Customer, Message, Outbox, OutboxState, Ticket


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
        return CardSnapshot(threads=_threads(ticket), view=card_view(session, ticket))


def read_message(db: Database, message_id: int) -> MessageSnapshot | None:
    with db.read() as session:
        message = session.get(Message, message_id)
        if message is None:
            return None
        # A merged ticket's messages moved with it: post where the message lives now.
        ticket = session.get(Ticket, message.ticket_id)
        assert ticket is not None
        author = session.get(Customer, message.author_customer_id) if message.author_customer_id else None
        files = session.scalars(
            select(Attachment).where(Attachment.message_id == message.id).order_by(Attachment.id)
        ).all()
        return MessageSnapshot(
            id=message.id,
            threads=_threads(ticket),
            direction=message.direction,
            visibility=message.visibility,
            source=message.source,
            author_name=message.author_name,
            author_slack_id=message.author_slack_id,
            author_email=author.email if author is not None else None,
            body_markdown=message.body_markdown,
            raw_sha256=message.raw_sha256,
            deleted=message.deleted_at is not None,
            delivery=message.delivery,
            mirror_channel=message.mirror_channel,
            mirror_ts=message.mirror_ts,
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
            parts = _parts(row.result or {})
            if parts:
                return parts
    return []


def _parts(result: dict[str, object]) -> list[str]:
    numbered = sorted((int(key[3:]), str(ts)) for key, ts in result.items() if key.startswith("ts:"))
    return [ts for _part, ts in numbered]


# ----- written in the transaction that marks a row done -----


def record_triage_thread(ticket_id: int, channel: str, ts: str) -> Callable[[Session], None]:
    def apply(session: Session) -> None:
        ticket = session.get(Ticket, ticket_id)
        if ticket is not None and not ticket.triage_ts:
            ticket.triage_channel = channel
            ticket.triage_ts = ts

    return apply


def record_copy(
    message_id: int, channel: str | None, ts: str | None, file_ids: dict[int, str]
) -> Callable[[Session], None]:
    """The copy the desk posted of a message, and the Slack file ids of its attachments."""

    def apply(session: Session) -> None:
        message = session.get(Message, message_id)
        if message is not None and channel and ts and not message.mirror_ts:
            message.mirror_channel = channel
            message.mirror_ts = ts
        for attachment_id, file_id in file_ids.items():
            attachment = session.get(Attachment, attachment_id)
            if attachment is not None:
                attachment.slack_file_id = file_id

    return apply
