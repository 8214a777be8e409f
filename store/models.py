"""SQLAlchemy 2 typed models: the whole schema, owned by Alembic migrations.

Every lookup on a hot path (Slack thread ts, reply key, Message-ID, inbound dedupe key) has a
unique index. CHECK constraints are named: SQLite batch migrations drop unnamed ones.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Alembic's recommended convention, from the first migration on, so constraints can be
# altered and dropped by name on every engine.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _ShownTextMixin:
    """Text people wrote, for showing, fitted on the way in, alike on every engine.

    PostgreSQL refuses a NUL character in text and a value longer than its column, and a request
    holding one would then fail on every attempt: a mail answered 250 would never become a ticket.
    SQLite accepts both. A NUL means nothing in text a person reads, and a name or subject longer
    than its column is cut rather than lost. Only for display columns: keys and addresses are
    checked where they come in, since cutting one would change what it matches.
    """

    impl: Any

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            value = value.replace("\x00", "")
        length = getattr(self.impl, "length", None)
        return value[:length] if length is not None and len(value) > length else value


class ShownString(_ShownTextMixin, TypeDecorator[str]):
    """A name, subject or file name: `String(length)` that fits what it is given (see above)."""

    impl = String
    cache_ok = True


class ShownText(_ShownTextMixin, TypeDecorator[str]):
    """A message body or an error: `Text` without NUL characters (see above)."""

    impl = Text
    cache_ok = True


# The longest URL `link` keeps (browsers and trackers handle far shorter ones).
MAX_LINK_URL_CHARS = 2000

# BIGINT primary keys on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# The largest integer SQLite and PostgreSQL (BIGINT) hold: no row ID exceeds it, no LIMIT may.
MAX_ROW_ID = 2**63 - 1


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Status(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Origin(enum.StrEnum):
    EMAIL = "email"
    SLACK = "slack"
    WEB = "web"
    STAFF = "staff"


class Direction(enum.StrEnum):
    INBOUND = "inbound"  # from a customer
    OUTBOUND = "outbound"  # from staff (public reply or note) or the desk itself


class Visibility(enum.StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"


class Delivery(enum.StrEnum):
    """Where a staff reply stands on its way to the customer."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class LinkKind(enum.StrEnum):
    RELATES = "relates"
    DUPLICATES = "duplicates"
    BLOCKS = "blocks"


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class InboundState(enum.StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"


def _enum_check(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class Counter(Base):
    """Named counters: ticket numbers are handed out here, one row lock at a time."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(ShownString(200))
    email_domain: Mapped[str | None] = mapped_column(String(255), unique=True)
    slack_team_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(ShownString(200))
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    slack_user_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    slack_team_id: Mapped[str | None] = mapped_column(String(32))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organization: Mapped[Organization | None] = relationship()


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        _enum_check("status", Status),
        _enum_check("priority", Priority),
        _enum_check("origin", Origin),
        UniqueConstraint("triage_channel", "triage_ts"),
        UniqueConstraint("origin_channel", "origin_thread_ts"),
        Index("ix_tickets_status_updated", "status", "updated_at"),
        Index("ix_tickets_assignee_status", "assignee_slack_id", "status"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True)
    subject: Mapped[str] = mapped_column(ShownString(500))
    status: Mapped[str] = mapped_column(String(16), default=Status.OPEN)
    priority: Mapped[str] = mapped_column(String(16), default=Priority.NORMAL)
    origin: Mapped[str] = mapped_column(String(16))
    requester_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    assignee_slack_id: Mapped[str | None] = mapped_column(String(32))
    # Opaque, random, >= 128 bits: customers reply to <local>+<reply_key>@<domain>.
    reply_key: Mapped[str] = mapped_column(String(64), unique=True)
    triage_channel: Mapped[str | None] = mapped_column(String(32))
    triage_ts: Mapped[str | None] = mapped_column(String(32))
    origin_channel: Mapped[str | None] = mapped_column(String(32))
    origin_thread_ts: Mapped[str | None] = mapped_column(String(32))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    requester: Mapped[Customer] = relationship()
    labels: Mapped[list[Label]] = relationship(secondary="ticket_labels", order_by="Label.name")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        _enum_check("direction", Direction),
        _enum_check("visibility", Visibility),
        UniqueConstraint("slack_channel", "slack_ts"),
        UniqueConstraint("mirror_channel", "mirror_ts"),
        Index("ix_messages_ticket_created", "ticket_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    direction: Mapped[str] = mapped_column(String(16))
    visibility: Mapped[str] = mapped_column(String(16), default=Visibility.PUBLIC)
    # "email", "slack", "web", "command" (a /desk note), "system" (a line the desk writes)
    source: Mapped[str] = mapped_column(String(16))
    author_customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    author_slack_id: Mapped[str | None] = mapped_column(String(32))
    author_name: Mapped[str] = mapped_column(ShownString(200), default="")
    body_markdown: Mapped[str] = mapped_column(ShownText, default="")
    # For email: the whole body before quote trimming (body_markdown is what Slack shows).
    full_markdown: Mapped[str | None] = mapped_column(ShownText)
    subject: Mapped[str | None] = mapped_column(ShownString(500))
    email_message_id: Mapped[str | None] = mapped_column(String(998), unique=True)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    # Where the message was written in Slack (a customer's or a staff member's message).
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    # The copy the desk posted: in the triage thread for customer messages, in the customer's
    # Slack thread for staff replies.
    mirror_channel: Mapped[str | None] = mapped_column(String(32))
    mirror_ts: Mapped[str | None] = mapped_column(String(32))
    delivery: Mapped[str | None] = mapped_column(String(16))
    deliver_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivery_error: Mapped[str | None] = mapped_column(ShownText)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Slack's time of the edit the body holds: an older edit arriving later (a retried event, or
    # events out of order) must not undo it.
    slack_edit_ts: Mapped[str | None] = mapped_column(String(32))
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id")


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(ShownString(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    # Files live in the file store under their content hash, never under a customer's name.
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    inline: Mapped[bool] = mapped_column(default=False)
    slack_file_id: Mapped[str | None] = mapped_column(String(32))


class EmailId(Base):
    """Every Message-ID the desk sent or received, so a reply's In-Reply-To finds its ticket."""

    __tablename__ = "email_ids"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    # "sent" or "received"
    direction: Mapped[str] = mapped_column(String(16))
    # Sent: the one address that copy went to. Only its reader is shown its Message-ID (in later
    # References): a bounce naming it is believed as a failed delivery to that address.
    recipient: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "email"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(ShownString(200), default="")
    # "requester" or "cc"
    role: Mapped[str] = mapped_column(String(16), default="cc")
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bounce_reason: Mapped[str | None] = mapped_column(ShownText)
    # Opaque key for this participant's unsubscribe link and bounce address.
    unsubscribe_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Label(Base):
    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    color: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TicketLabel(Base):
    __tablename__ = "ticket_labels"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id"), primary_key=True, index=True)


class TicketLink(Base):
    __tablename__ = "ticket_links"
    __table_args__ = (
        _enum_check("kind", LinkKind),
        CheckConstraint("(target_ticket_id IS NULL) <> (url IS NULL)", name="target_xor_url"),
        UniqueConstraint("ticket_id", "target_ticket_id"),
        UniqueConstraint("ticket_id", "url"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    target_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    url: Mapped[str | None] = mapped_column(String(MAX_LINK_URL_CHARS))
    kind: Mapped[str] = mapped_column(String(16), default=LinkKind.RELATES)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TicketEvent(Base):
    """The audit trail every metric is computed from."""

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket_at", "ticket_id", "created_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str | None] = mapped_column(String(320))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Outbox(Base):
    """What must be delivered: written in the transaction of the action that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        _enum_check("state", OutboxState),
        Index("ix_outbox_due", "state", "next_attempt_at"),
        Index("ix_outbox_lane", "lane", "state", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    # The message this row delivers (a staff reply's email or Slack post), for its receipt.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    # Rows in one lane are performed in id order (the posts of one Slack thread); rows without a
    # lane are independent.
    lane: Mapped[str | None] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(ShownText)
    # What the delivery produced (a posted ts, a file id obtained before uploading, ...): kept
    # across attempts so a retry after an unknown outcome can find its earlier effect.
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InboundItem(Base):
    """Accepted input, committed before it is acknowledged; the worker turns it into tickets.

    `dedupe_key` is the Slack event_id, the email Message-ID, etc.: a second delivery of the same
    key changes nothing.
    """

    __tablename__ = "inbound_items"
    __table_args__ = (
        _enum_check("state", InboundState),
        Index("ix_inbound_items_due", "state", "id"),
        # The claim's lane rule looks for an earlier waiting item of the same lane: without this
        # index that is a scan per candidate, quadratic in the backlog.
        Index("ix_inbound_items_lane", "lane", "state", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(1000), unique=True)
    lane: Mapped[str | None] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default=InboundState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    # After a failed attempt the item waits (with backoff) before it is tried again.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(ShownText)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SlackUser(Base):
    """Cache of Slack profiles and of who is staff (members of the triage channel)."""

    __tablename__ = "slack_users"
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team_id: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(ShownString(200), default="")
    real_name: Mapped[str] = mapped_column(ShownString(200), default="")
    display_name: Mapped[str] = mapped_column(ShownString(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    avatar_url: Mapped[str | None] = mapped_column(String(1000))
    is_bot: Mapped[bool] = mapped_column(default=False)
    is_staff: Mapped[bool] = mapped_column(default=False)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ServiceState(Base):
    """Small shared facts every process must see, e.g. that Slack delivery is paused."""

    __tablename__ = "service_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
