"""Message actions: customer messages in, staff replies out (after the undo window), notes, edits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from store import outbox
from store.actions.common import (
    Actor,
    DeskPolicy,
    customer_slack_threads,
    enqueue_emails,
    literal,
    record_event,
    thread_line,
    touch,
    update_card,
)
from store.actions.tickets import REOPENING, TICKET_LOCK, participant_on, set_status
from store.models import (
    Attachment,
    Customer,
    Delivery,
    Direction,
    EmailId,
    Message,
    Origin,
    Outbox,
    OutboxState,
    Status,
    Ticket,
    Visibility,
    utcnow,
)
from store.outbox import Kind

# Receipts on a staff message in the triage thread (Slack reaction names).
REACTION_PENDING = "hourglass_flowing_sand"
REACTION_DELIVERED = "white_check_mark"
REACTION_FAILED = "x"
REACTION_NOTE = "lock"


@dataclass(frozen=True)
class NewAttachment:
    """A file already written to the file store under its content hash."""

    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool = False


def _add_attachments(session: Session, message: Message, attachments: list[NewAttachment]) -> None:
    for item in attachments:
        session.add(
            Attachment(
                message_id=message.id,
                filename=item.filename,
                content_type=item.content_type,
                size=item.size,
                sha256=item.sha256,
                inline=item.inline,
            )
        )


def message_by_slack_ts(session: Session, channel: str, ts: str) -> Message | None:
    return session.scalar(select(Message).where(Message.slack_channel == channel, Message.slack_ts == ts))


def message_by_email_id(session: Session, message_id: str) -> Message | None:
    return session.scalar(select(Message).where(Message.email_message_id == message_id))


def add_customer_message(
    session: Session,
    policy: DeskPolicy,
    ticket: Ticket,
    *,
    customer: Customer,
    body_markdown: str,
    source: str,
    full_markdown: str | None = None,
    subject: str | None = None,
    email_message_id: str | None = None,
    raw_sha256: str | None = None,
    slack_channel: str | None = None,
    slack_ts: str | None = None,
    attachments: list[NewAttachment] | None = None,
    now: datetime | None = None,
) -> Message:
    """A customer's message: stored, mirrored into the triage thread, reopening a finished ticket.

    `now` is the time of the change it is part of (the ticket it opens), else the present."""
    now = now or utcnow()
    message = Message(
        ticket_id=ticket.id,
        direction=Direction.INBOUND,
        visibility=Visibility.PUBLIC,
        source=source,
        author_customer_id=customer.id,
        author_name=customer.name,
        body_markdown=body_markdown,
        full_markdown=full_markdown,
        subject=subject,
        email_message_id=email_message_id,
        raw_sha256=raw_sha256,
        slack_channel=slack_channel,
        slack_ts=slack_ts,
        created_at=now,
    )
    session.add(message)
    session.flush()
    _add_attachments(session, message, attachments or [])
    if email_message_id:
        session.add(
            EmailId(message_id=email_message_id, ticket_id=ticket.id, direction="received", created_at=now)
        )
    # Who wrote: a Slack customer by their Slack id (as the ticket they opened names them; many
    # have no email, and an event without an actor is the desk's own), a mail by its address.
    by = Actor(
        customer.name, slack_id=customer.slack_user_id if source == "slack" else None, email=customer.email
    )
    record_event(
        session,
        ticket,
        "message_in",
        by,
        source=source,
        message_id=message.id,
    )
    touch(ticket, now)
    outbox.enqueue(
        session,
        Kind.THREAD_POST,
        ticket_id=ticket.id,
        message_id=message.id,
        lane=outbox.triage_lane(ticket.id),
    )
    # A finished ticket reopens; a "pending" one waited on the customer, whose answer puts it back
    # in the team's court.
    if ticket.status in REOPENING or ticket.status == Status.PENDING:
        set_status(session, policy, ticket, Status.OPEN, by, notify=False)
    return message


def _staff_message(
    session: Session,
    ticket: Ticket,
    author: Actor,
    body_markdown: str,
    slack_channel: str | None,
    slack_ts: str | None,
    visibility: Visibility,
    now: datetime,
    *,
    delivery: str | None = None,
    deliver_after: datetime | None = None,
) -> Message:
    """A staff member's message, stored: written in Slack (with its ts) or with a /desk command."""
    message = Message(
        ticket_id=ticket.id,
        direction=Direction.OUTBOUND,
        visibility=visibility,
        source="slack" if slack_ts else "command",
        author_slack_id=author.slack_id,
        author_name=author.name,
        body_markdown=body_markdown,
        slack_channel=slack_channel,
        slack_ts=slack_ts,
        delivery=delivery,
        deliver_after=deliver_after,
        created_at=now,
    )
    session.add(message)
    session.flush()
    return message


def add_staff_reply(
    session: Session,
    policy: DeskPolicy,
    ticket: Ticket,
    *,
    author: Actor,
    body_markdown: str,
    slack_channel: str | None,
    slack_ts: str | None,
    attachments: list[NewAttachment] | None = None,
    now: datetime | None = None,
    nothing_to_send: str | None = None,
) -> Message:
    """A public reply: delivered after the undo window, by email or into the customer's thread.

    `nothing_to_send`: why the reply holds nothing a customer could be sent (no text, and none of
    its files could be copied): it is kept, marked failed with that reason, and goes nowhere, rather
    than mailing a blank message or ticking a post that never happened as delivered."""
    now = now or utcnow()
    deliver_after = now + policy.reply_delay
    message = _staff_message(
        session,
        ticket,
        author,
        body_markdown,
        slack_channel,
        slack_ts,
        Visibility.PUBLIC,
        now,
        delivery=Delivery.PENDING,
        deliver_after=deliver_after,
    )
    _add_attachments(session, message, attachments or [])
    if nothing_to_send is not None:
        message.delivery = Delivery.FAILED
        message.delivery_error = nothing_to_send
        thread_line(session, ticket, f"Not delivered: {nothing_to_send}.")
        _react(session, ticket, message, REACTION_FAILED)
        touch(ticket)
        return message
    recipients = 0
    for listener in customer_slack_threads(session, ticket):
        # The row's ticket names the customer thread it posts into (this one, or one merged here).
        outbox.enqueue(
            session,
            Kind.ORIGIN_POST,
            ticket_id=listener.id,
            message_id=message.id,
            lane=outbox.origin_lane(listener.id),
            due_at=deliver_after,
        )
        recipients += 1
    # Email participants hear it too, on a Slack ticket as well: someone added with `cc add`, or
    # the requester of an email ticket merged into this one.
    recipients += enqueue_emails(
        session, ticket, policy, template="staff_reply", message_id=message.id, due_at=deliver_after
    )
    if recipients == 0:
        message.delivery = Delivery.FAILED
        message.delivery_error = "the ticket has no one to deliver to (no subscribed email participant)"
        thread_line(
            session, ticket, f"Not delivered: {message.delivery_error}. Add one with `!cc add &lt;email&gt;`."
        )
        _react(session, ticket, message, REACTION_FAILED)
    else:
        _react(session, ticket, message, REACTION_PENDING)
    # The first response is counted when a reply reaches the customer (`settle_delivery`).
    record_event(session, ticket, "reply", author, message_id=message.id)
    touch(ticket)
    return message


def add_note(
    session: Session,
    ticket: Ticket,
    *,
    author: Actor,
    body_markdown: str,
    slack_channel: str | None = None,
    slack_ts: str | None = None,
    attachments: list[NewAttachment] | None = None,
) -> Message:
    """An internal note: stored, never delivered, marked as a note in the thread at once."""
    message = _staff_message(
        session, ticket, author, body_markdown, slack_channel, slack_ts, Visibility.INTERNAL, utcnow()
    )
    _add_attachments(session, message, attachments or [])
    if slack_ts:
        _react(session, ticket, message, REACTION_NOTE)
    else:
        # Written with /desk note: post it into the thread, marked as a note.
        outbox.enqueue(
            session,
            Kind.THREAD_POST,
            ticket_id=ticket.id,
            message_id=message.id,
            lane=outbox.triage_lane(ticket.id),
        )
    record_event(session, ticket, "note", author, message_id=message.id)
    touch(ticket)
    return message


def _react(
    session: Session, ticket: Ticket, message: Message, name: str | None, *, remove: str | None = None
) -> None:
    if not (message.slack_channel and message.slack_ts):
        return
    outbox.enqueue(
        session,
        Kind.REACTION,
        ticket_id=ticket.id,
        message_id=message.id,
        # One message's marks in the order they were written: a "pending" retried after its answer
        # was lost must not land after "delivered" has replaced it.
        lane=outbox.receipt_lane(message.id),
        payload={"channel": message.slack_channel, "ts": message.slack_ts, "add": name, "remove": remove},
    )


def _mirror(session: Session, ticket: Ticket, message: Message, kind: Kind) -> bool:
    """Carry an edit or a deletion over to the copies the desk posted of `message`: a customer's in
    the triage thread, a staff reply in every customer thread it went to (its ticket's own, and
    those of tickets merged into it). False when there is no copy."""
    if message.direction == Direction.INBOUND:
        # Whether the copy exists is read after this change is written, not from the loaded
        # message: a worker recording the copy just now is then either seen here, or it sees this
        # change when its row is done (`follow_late_copy`).
        session.flush()
        if not session.scalar(select(Message.mirror_ts).where(Message.id == message.id)):
            return False
        outbox.enqueue(
            session, kind, ticket_id=ticket.id, message_id=message.id, lane=outbox.mirror_lane(message.id)
        )
        return True
    return _mirror_copies(session, message, kind)


def _mirror_copies(session: Session, message: Message, kind: Kind, *, row_id: int | None = None) -> bool:
    """One mirror row per copy of a staff reply (or only `row_id`'s), in that copy's lane
    (`outbox.mirror_lane`), naming its ticket (whose thread it is) and its posts."""
    copies = _customer_thread_copies(session, message, row_id=row_id)
    for thread_ticket_id, parts, files in copies:
        outbox.enqueue(
            session,
            kind,
            ticket_id=thread_ticket_id,
            message_id=message.id,
            lane=outbox.mirror_lane(message.id, thread_ticket_id),
            payload={"parts": parts, "files": files},
        )
    return bool(copies)


def _customer_thread_copies(
    session: Session, message: Message, *, row_id: int | None = None
) -> list[tuple[int, list[str], list[str]]]:
    """Each customer Slack thread a staff reply was posted into: its ticket, the posts' ts and the
    files shared there (a deletion takes those back too)."""
    query = (
        select(Outbox.ticket_id, Outbox.result)
        .where(
            Outbox.message_id == message.id,
            Outbox.kind == Kind.ORIGIN_POST.value,
            Outbox.state == OutboxState.DONE,
        )
        .order_by(Outbox.id)
    )
    rows = session.execute(query if row_id is None else query.where(Outbox.id == row_id)).all()
    copies: list[tuple[int, list[str], list[str]]] = []
    for ticket_id, result in rows:
        parts, files = outbox.posted_parts(result or {}), outbox.shared_files(result or {})
        if ticket_id is not None and (parts or files):
            copies.append((ticket_id, parts, files))
    return copies


def _waiting(message: Message, now: datetime) -> bool:
    return (
        message.delivery == Delivery.PENDING
        and message.deliver_after is not None
        and now < message.deliver_after
    )


def _emailed(session: Session, message: Message) -> Literal["sent", "sending"] | None:
    """Has the message gone out by email to anyone, or is a worker handing it to the relay right
    now? Either copy cannot be edited or called back. (A row done as skipped sent nothing.)"""
    rows = session.execute(
        select(Outbox.state, Outbox.result).where(
            Outbox.message_id == message.id,
            Outbox.kind == Kind.EMAIL,
            Outbox.state.in_((OutboxState.DONE, OutboxState.CLAIMED)),
        )
    ).all()
    if any(state == OutboxState.DONE and "skipped" not in (result or {}) for state, result in rows):
        return "sent"
    if any(state == OutboxState.CLAIMED for state, _ in rows):
        return "sending"
    return None


def remember_slack_edit(session: Session, channel: str, ts: str, edit_ts: str) -> None:
    """The message at (channel, ts) was stored from its edit at `edit_ts` (the edit overtook it):
    it holds that edit, so an older one arriving later changes nothing."""
    session.execute(
        update(Message)
        .where(Message.slack_channel == channel, Message.slack_ts == ts, Message.slack_edit_ts.is_(None))
        .values(slack_edit_ts=edit_ts)
    )


def ts_order(ts: str) -> tuple[int, int]:
    """A Slack ts (`seconds.micros`) as something that sorts by time."""
    seconds, _, fraction = ts.partition(".")
    try:
        return int(seconds), int((fraction + "000000")[:6])
    except ValueError:
        return 0, 0


# What a staff reply's edit can turn it into: neither is ever delivered.
Becomes = Literal["note", "command"]


def edit_slack_message(
    session: Session,
    ticket: Ticket,
    message: Message,
    *,
    body_markdown: str,
    becomes: Becomes | None = None,
    edit_ts: str | None = None,
    now: datetime | None = None,
) -> str:
    """Someone edited a message we hold. Returns what happened, for logs and tests.

    `edit_ts` is Slack's time of the edit: one older than the edit the message holds came late
    (Slack retried its event, or sent two out of order) and changes nothing ("stale").

    A reply edited to start with `note:` or `!` (`becomes` "note" or "command") is taken back while
    its undo window is open, since neither is ever delivered ("made_note", "made_command"; the
    caller runs the command); once it is on its way it stays the reply it was, and the thread is
    told."""
    now = now or utcnow()
    if message.deleted_at is not None:
        return "unchanged"
    if (
        edit_ts is not None
        and message.slack_edit_ts is not None
        and ts_order(edit_ts) <= ts_order(message.slack_edit_ts)
    ):
        return "stale"
    if edit_ts is not None:
        message.slack_edit_ts = edit_ts
    if message.body_markdown == body_markdown and becomes is None:
        return "unchanged"
    previous = message.body_markdown
    message.body_markdown = body_markdown
    message.edited_at = now
    if message.direction == Direction.INBOUND:
        _mirror(session, ticket, message, Kind.MIRROR_UPDATE)
        return "mirrored"
    if message.visibility == Visibility.INTERNAL:
        return "note"
    waiting = _waiting(message, now)
    if becomes is not None:
        # Not with anyone yet and no worker sending it: inside the window, or after it while Slack
        # or the relay holds its delivery back (a deletion then stops it too: its rows read it).
        # A reply that failed before it reached anyone (a refused address, a channel the bot left,
        # nobody to deliver to) is with no one either: it can still be taken back, and an operator
        # sending its failed rows again then sends nothing (`read_facts` skips a note).
        retractable = message.delivery in (Delivery.PENDING, Delivery.FAILED)
        if retractable and not outbox.delivery_started(session, message.id):
            failed = message.delivery == Delivery.FAILED
            outbox.cancel_for_message(session, message.id)
            message.visibility = Visibility.INTERNAL
            message.delivery = Delivery.CANCELLED
            message.delivery_error = None
            record_event(session, ticket, f"reply_to_{becomes}", _author(message), message_id=message.id)
            marker = REACTION_NOTE if becomes == "note" else None
            _react(session, ticket, message, marker, remove=REACTION_FAILED if failed else REACTION_PENDING)
            return f"made_{becomes}"
        if message.delivery == Delivery.PENDING:
            state = "is being delivered"
        elif message.delivery == Delivery.FAILED:
            state = "already reached some of its recipients"
        else:
            state = "was already delivered"
        thread_line(session, ticket, f"That reply {state}; it cannot become a {becomes} now.")
        message.body_markdown = previous
        return f"too_late_for_{becomes}"
    if waiting:
        # The waiting rows read the body when they run: the edit is what gets sent. A row a worker
        # finished as the window closed (its clock a little ahead) has a copy to carry it to; one
        # still being posted takes it when it is done (`follow_late_copy`).
        _mirror(session, ticket, message, Kind.MIRROR_UPDATE)
        return "changed_before_delivery"
    mirrored = _mirror(session, ticket, message, Kind.MIRROR_UPDATE)
    emailed = _emailed(session, message)
    if emailed == "sent":
        # A Slack ticket's email participants too: their copy cannot change.
        thread_line(
            session, ticket, "Edited after delivery: the customer already has the earlier text by email."
        )
    elif emailed == "sending":
        # The relay has the mail as it was: the edit cannot reach it.
        thread_line(
            session,
            ticket,
            "Edited while it was being emailed: the customer may get the earlier text by email.",
        )
    return "mirrored" if mirrored else "already_sent"


def drop_slack_files(
    session: Session,
    ticket: Ticket,
    message: Message,
    files: list[tuple[str, int | None]],
    *,
    now: datetime | None = None,
) -> str:
    """Files the author deleted in Slack from their reply (`files`: name and size, as the copy was
    named): inside the undo window they are not sent (an edit changes what is sent); a reply left
    with neither text nor files is withdrawn, as a deletion. Returns what happened."""
    now = now or utcnow()
    if (
        not files
        or message.deleted_at is not None
        or message.direction != Direction.OUTBOUND
        or message.visibility != Visibility.PUBLIC
    ):
        return "unchanged"
    kept = list(message.attachments)
    dropped: list[Attachment] = []
    for name, size in files:
        match = next((a for a in kept if a.filename == name and (size is None or a.size == size)), None)
        if match is not None:
            kept.remove(match)
            dropped.append(match)
    if not dropped:
        return "unchanged"
    if not _waiting(message, now) or outbox.delivery_started(session, message.id):
        names = ", ".join(literal(a.filename) for a in dropped)
        thread_line(
            session, ticket, f"Deleted from the reply after it went out: {names}. The customer may have it."
        )
        return "files_too_late"
    for attachment in dropped:
        session.delete(attachment)
    set_committed_value(message, "attachments", kept)
    if not message.body_markdown.strip() and not kept:
        return delete_slack_message(session, ticket, message, now=now)
    return "files_removed"


def delete_slack_message(
    session: Session, ticket: Ticket, message: Message, *, now: datetime | None = None
) -> str:
    now = now or utcnow()
    if message.deleted_at is not None:
        return "unchanged"
    message.deleted_at = now
    if message.direction == Direction.INBOUND:
        _mirror(session, ticket, message, Kind.MIRROR_DELETE)
        if message.attachments:
            # The files it brought stay in the thread as part of the ticket's record (staff may
            # have acted on them); without a word they would sit there with nothing saying where
            # they came from or that the customer took them back.
            names = [literal(a.filename) for a in message.attachments]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            thread_line(
                session,
                ticket,
                f"The customer deleted their message that came with {shown}; "
                f"{'the file is' if len(names) == 1 else 'the files are'} kept here for the record.",
            )
        return "mirrored"
    if message.visibility == Visibility.INTERNAL:
        return "note"
    if _waiting(message, now):
        if outbox.delivery_started(session, message.id):
            # A worker is sending it, or it has reached one of its recipients. Copies posted so far
            # are deleted now, one still being posted when its row is done (`follow_late_copy`);
            # an email that left cannot be called back.
            _mirror_copies(session, message, Kind.MIRROR_DELETE)
            thread_line(session, ticket, "Deleted while it was being delivered: the customer may have it.")
            return "already_sent"
        outbox.cancel_for_message(session, message.id)
        message.delivery = Delivery.CANCELLED
        record_event(session, ticket, "reply_cancelled", _author(message), message_id=message.id)
        return "cancelled"
    mirrored = _mirror(session, ticket, message, Kind.MIRROR_DELETE)
    emailed = _emailed(session, message)
    # Its files sent as links (too large to attach) are no longer served (bot.web_routes).
    links = " (any links to its files no longer work)" if emailed and message.attachments else ""
    if emailed == "sent":
        thread_line(session, ticket, f"Deleted after delivery: the customer already has it by email{links}.")
    elif emailed == "sending":
        thread_line(
            session, ticket, f"Deleted while it was being emailed: the customer may have it by email{links}."
        )
    return "mirrored" if mirrored else "already_sent"


def copy_digest(body_markdown: str) -> str:
    """What a posted copy of a message said, in short: a row records it, so its settle can tell
    whether the message changed while the copy was being posted."""
    return hashlib.sha256(body_markdown.encode()).hexdigest()[:16]


def follow_late_copy(session: Session, locked: LockedMessage, row_id: int, posted_digest: str) -> None:
    """A message deleted or edited while this row was posting a copy of it (a staff reply into a
    customer thread, a customer's Slack message into the triage thread): the deletion or edit could
    not see the copy the row has just made, so it reaches that copy now.

    `locked` comes from `lock_message`, taken before the copy was recorded: an edit or deletion in
    flight either committed before (and is seen here) or waits for this transaction and then finds
    the copy recorded."""
    message, ticket = locked
    if message.deleted_at is not None:
        kind = Kind.MIRROR_DELETE
    elif copy_digest(message.body_markdown) != posted_digest:
        kind = Kind.MIRROR_UPDATE
    else:
        return
    if message.direction == Direction.INBOUND:
        _mirror(session, ticket, message, kind)
    else:
        _mirror_copies(session, message, kind, row_id=row_id)


# A message and its ticket, both locked by this transaction (`lock_message`).
LockedMessage = tuple[Message, Ticket]


def lock_message(session: Session, message_id: int) -> LockedMessage | None:
    """A message and its ticket, locked in the order every change takes them: the ticket, then the
    message (a merge locks both tickets, then moves their messages). Taken after the outbox row a
    worker settles, as edits and deletions lock the reply's rows before the reply.

    The ticket's lock leaves its key alone (FOR NO KEY UPDATE), so a change that only adds rows
    naming the ticket (an edit's mirror row, a thread line) never waits for it. Read afresh:
    a message merged into another ticket while this waited is followed there.
    """
    where = select(Message.ticket_id).where(Message.id == message_id)
    ticket_id = session.scalar(where)
    while ticket_id is not None:
        ticket = session.get(Ticket, ticket_id, with_for_update=TICKET_LOCK, populate_existing=True)
        if ticket is None:
            return None
        # Read again now the ticket is held: a merge that moved the message while this waited has
        # committed (and no other can move it off a held ticket). The message is locked only once
        # it is on the held ticket: holding it while waiting for the next ticket would deadlock with
        # a merge of that ticket, which holds it and waits to move the message on.
        ticket_id = session.scalar(where)
        if ticket_id == ticket.id:
            message = session.get(Message, message_id, with_for_update=True, populate_existing=True)
            return (message, ticket) if message is not None else None
    return None


def lock_for_change(session: Session, message_id: int) -> LockedMessage | None:
    """A message about to be edited or deleted, and its ticket, locked in the order a settling
    worker takes them: a reply's deliveries (the change may cancel them), its ticket, then the
    message. A merge locks the tickets before it moves their messages, so a change and a merge
    take turns (taking the message first, a change deadlocked with a merge on PostgreSQL)."""
    outbox.lock_deliveries(session, message_id)
    return lock_message(session, message_id)


def settle_delivery(
    session: Session,
    message_id: int,
    *,
    failed_error: str | None = None,
    reached: bool = False,
    locked: LockedMessage | None = None,
) -> None:
    """After one of a reply's deliveries ended: update its receipt once all have ended. `reached`:
    this delivery put the reply in front of a customer (it was not skipped).

    The reply is locked first (`lock_message`, unless the caller holds it as `locked`): two of its
    deliveries settling at once take turns, so the second sees the first done rather than both
    seeing the other still open and leaving the receipt pending."""
    locked = locked or lock_message(session, message_id)
    if locked is None:
        return
    message, ticket = locked
    if message.delivery not in (Delivery.PENDING, Delivery.FAILED):
        return
    if failed_error is not None:
        if message.delivery != Delivery.FAILED:
            message.delivery = Delivery.FAILED
            _react(session, ticket, message, REACTION_FAILED, remove=REACTION_PENDING)
        message.delivery_error = failed_error
        return
    if reached and ticket.first_response_at is None and _answers_the_customer(session, ticket, message):
        _first_response(session, ticket, _author(message), message_id=message.id)
    if _has_delivery_in(session, message.id, (OutboxState.PENDING, OutboxState.CLAIMED)):
        return
    if message.delivery == Delivery.FAILED:
        _delivered_after_all(session, ticket, message)
        return
    if reached or _reached_anyone(session, message.id):
        message.delivery = Delivery.DELIVERED
        _react(session, ticket, message, REACTION_DELIVERED, remove=REACTION_PENDING)
        record_event(session, ticket, "delivered", None, message_id=message.id)
        _tell_files_not_attached(session, ticket, message.id)
        return
    if message.deleted_at is not None or message.visibility != Visibility.PUBLIC:
        # Deleted (or made a note) after its window closed, before any delivery went out.
        message.delivery = Delivery.CANCELLED
        return
    # Every delivery was skipped: its recipients unsubscribed, bounced or were removed meanwhile.
    message.delivery = Delivery.FAILED
    message.delivery_error = "nobody could receive it (unsubscribed, bounced or removed since it was written)"
    thread_line(session, ticket, f"Not delivered: {message.delivery_error}.")
    _react(session, ticket, message, REACTION_FAILED, remove=REACTION_PENDING)


def _delivered_after_all(session: Session, ticket: Ticket, message: Message) -> None:
    """A failed reply whose failed deliveries were all sent again (`servicedesk outbox --retry`) and
    went out: the customer has it, so its receipt must stop saying it failed."""
    still_failed = _has_delivery_in(session, message.id, (OutboxState.FAILED,))
    if still_failed or not _reached_anyone(session, message.id):
        return
    message.delivery = Delivery.DELIVERED
    message.delivery_error = None
    _react(session, ticket, message, REACTION_DELIVERED, remove=REACTION_FAILED)
    record_event(session, ticket, "delivered", None, message_id=message.id)
    thread_line(session, ticket, "Delivered after all: the reply went out when it was sent again.")
    _tell_files_not_attached(session, ticket, message.id)


def _answers_the_customer(session: Session, ticket: Ticket, message: Message) -> bool:
    """Whether the customer had written before this reply: a `/desk new` ticket's opening (the
    first staff message, the customer's first mail) answers nothing and is no first response."""
    if ticket.origin != Origin.STAFF:
        return True
    asked = session.scalar(
        select(Message.id)
        .where(
            Message.ticket_id == ticket.id,
            Message.direction == Direction.INBOUND,
            Message.created_at <= message.created_at,
        )
        .limit(1)
    )
    return asked is not None


def _author(message: Message) -> Actor:
    """Who wrote a staff message: the one who edits or deletes it in Slack (only they can)."""
    return Actor(message.author_name or "", slack_id=message.author_slack_id)


def _first_response(
    session: Session, ticket: Ticket, author: Actor, *, at: datetime | None = None, **data: Any
) -> None:
    """Counted when a reply reached them: one deleted or made a note inside its undo window, or
    that nobody could receive, answered no one. `at`: when, if not now."""
    now = at or utcnow()
    # Conditional, so two replies of one ticket reaching customers at once (settled by two workers)
    # count once: the second waits for the first's row lock, then matches nothing.
    first = session.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.first_response_at.is_(None))
        .values(first_response_at=now)
        .execution_options(synchronize_session=False)
    )
    if not first.rowcount:  # type: ignore[attr-defined]
        return
    set_committed_value(ticket, "first_response_at", now)
    record_event(session, ticket, "first_response", author, at=now, **data)


DIRECT_REPLY = "direct_reply"


def record_direct_reply(
    session: Session, ticket: Ticket, author: Actor, *, slack_ts: str, at: datetime | None = None
) -> None:
    """Staff answered in the customer's own Slack thread, outside the desk: the customer has a
    public answer from them since `at` (when they wrote it; their first response, if it is the
    first), however long its event then waited for a worker."""
    record_event(session, ticket, DIRECT_REPLY, author, at=at, slack_ts=slack_ts)
    if ticket.first_response_at is None:
        _first_response(session, ticket, author, at=at, slack_ts=slack_ts)


def _has_delivery_in(session: Session, message_id: int, states: tuple[OutboxState, ...]) -> bool:
    """Whether one of the reply's deliveries is in one of `states`."""
    found = session.scalar(
        select(Outbox.id).where(
            Outbox.message_id == message_id,
            Outbox.kind.in_(outbox.REPLY_DELIVERIES),
            Outbox.state.in_(states),
        )
    )
    return found is not None


def _tell_files_not_attached(session: Session, ticket: Ticket, message_id: int) -> None:
    """One line for the reply's files its emails did not attach, however many people it went to:
    the ✅ alone read as if the customer had the files, while they got links or just the names.
    Called once per reply, when its receipt turns delivered; each email row recorded its own."""
    linked: dict[str, None] = {}
    missing: dict[str, None] = {}
    results = session.scalars(
        select(Outbox.result).where(
            Outbox.message_id == message_id, Outbox.kind == Kind.EMAIL, Outbox.state == OutboxState.DONE
        )
    )
    for result in results:
        found = (result or {}).get(outbox.FILES_NOT_ATTACHED) or {}
        linked.update(dict.fromkeys(str(name) for name in found.get("linked") or ()))
        missing.update(dict.fromkeys(str(name) for name in found.get("missing") or ()))
    missing_names = [name for name in missing if name not in linked]
    parts = []
    if linked:
        parts.append(f"{_file_names(list(linked))} (too large: sent as links)")
    if missing_names:
        parts.append(f"{_file_names(missing_names)} (missing from the file store: only named)")
    if parts:
        thread_line(session, ticket, f"Files not attached to the email: {'; '.join(parts)}.")


def _file_names(names: list[str], shown: int = 10) -> str:
    """File names as literal Slack text, the first `shown` of them and a count of the rest."""
    text = ", ".join(literal(name[:200]) for name in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _reached_anyone(session: Session, message_id: int) -> bool:
    results = session.scalars(
        select(Outbox.result).where(
            Outbox.message_id == message_id,
            Outbox.kind.in_(outbox.REPLY_DELIVERIES),
            Outbox.state == OutboxState.DONE,
        )
    )
    return any("skipped" not in (result or {}) for result in results)


def record_bounce(session: Session, ticket: Ticket, email: str, reason: str) -> None:
    participant = participant_on(session, ticket.id, email.lower())
    if participant is not None:
        participant.bounced_at = utcnow()
        participant.bounce_reason = reason[:1000]
    record_event(session, ticket, "bounce", None, email=email, reason=reason[:500])
    # The reason is the remote server's words, or whatever a forged report says.
    thread_line(session, ticket, f"Mail to {literal(email)} bounced: {literal(reason[:300])}")
    update_card(session, ticket)
