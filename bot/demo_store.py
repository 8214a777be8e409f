"""What the demo reads from the store: tickets, messages and deliveries, as plain facts.

It reads through its own engine, without the store's `BEGIN IMMEDIATE`: that takes SQLite's
write lock even to read, and the demo polls while the service writes. In WAL mode a plain read
never blocks the service.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.pool import NullPool

from store.models import Message, Outbox, OutboxState, Ticket


@dataclass(frozen=True)
class TicketFacts:
    number: int
    subject: str
    status: str
    priority: str
    origin: str
    requester: str
    assignee_slack_id: str | None
    labels: tuple[str, ...]
    reply_key: str
    triage_ts: str | None
    origin_channel: str | None
    origin_thread_ts: str | None


@dataclass(frozen=True)
class MessageFacts:
    ticket_number: int
    direction: str
    visibility: str
    source: str
    author_name: str
    body: str
    delivery: str | None
    slack_ts: str | None


class StoreReader:
    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(database_url, poolclass=NullPool)

    def dispose(self) -> None:
        self.engine.dispose()

    def tickets(self) -> list[TicketFacts]:
        with Session(self.engine) as session:
            query = (
                select(Ticket)
                .options(selectinload(Ticket.labels), selectinload(Ticket.requester))
                .order_by(Ticket.number)
            )
            return [
                TicketFacts(
                    number=ticket.number,
                    subject=ticket.subject,
                    status=ticket.status,
                    priority=ticket.priority,
                    origin=ticket.origin,
                    requester=ticket.requester.email or ticket.requester.name,
                    assignee_slack_id=ticket.assignee_slack_id,
                    labels=tuple(label.name for label in ticket.labels),
                    reply_key=ticket.reply_key,
                    triage_ts=ticket.triage_ts,
                    origin_channel=ticket.origin_channel,
                    origin_thread_ts=ticket.origin_thread_ts,
                )
                for ticket in session.scalars(query)
            ]

    def ticket(self, number: int) -> TicketFacts | None:
        return next((ticket for ticket in self.tickets() if ticket.number == number), None)

    def messages(self) -> list[MessageFacts]:
        with Session(self.engine) as session:
            query = select(Message, Ticket.number).join(Ticket, Message.ticket_id == Ticket.id)
            return [
                MessageFacts(
                    ticket_number=number,
                    direction=message.direction,
                    visibility=message.visibility,
                    source=message.source,
                    author_name=message.author_name,
                    body=message.body_markdown,
                    delivery=message.delivery,
                    slack_ts=message.slack_ts,
                )
                for message, number in session.execute(query.order_by(Message.id))
            ]

    def outbox_states(self) -> Counter[str]:
        with Session(self.engine) as session:
            return Counter(session.scalars(select(Outbox.state)))

    def outbox_unfinished(self) -> int:
        """Deliveries still to perform: pending (maybe waiting out the reply delay) or claimed."""
        states = self.outbox_states()
        return states[OutboxState.PENDING] + states[OutboxState.CLAIMED]

    def failed_deliveries(self) -> list[str]:
        """`kind: last error` for every delivery that gave up."""
        with Session(self.engine) as session:
            query = select(Outbox.kind, Outbox.last_error).where(Outbox.state == OutboxState.FAILED)
            return [f"{kind}: {error or 'no error recorded'}" for kind, error in session.execute(query)]
