"""Messages people post, edit and delete: new requests, customer threads, and triage threads.

- A top-level message in an intake channel from someone who is not staff opens a ticket.
- A reply in a ticket's customer thread is added to the ticket (a customer's) or pointed out in
  the triage thread (staff answering the customer directly, outside the desk).
- A staff member's reply in a ticket's triage thread is a public reply, a note (`note:`), or a
  command (`!`). Someone the desk does not know as staff writing there gets a note, never a reply:
  nothing reaches a customer unless staff wrote it.
- Edits and deletions of messages the desk holds go to the store actions, which decide what an
  edit or deletion still changes (the undo window) and mirror it.

Slack delivers events concurrently, so an edit or a deletion can arrive before the message it is
about. An edit of a fresh message we do not hold yet is taken as the message itself (it carries
the whole message, as edited); a deletion of one is remembered, so the message arriving late is
dropped.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bot.inbound_commands import COMMAND_PREFIX, run_command
from bot.inbound_context import (
    Claim,
    InboundContext,
    customer_for_profile,
    record_once,
    seen_before,
    skipped_files_line,
    subject_from,
)
from bot.inbound_events import MessageDeleted, MessageEdited, PostedMessage, parse_message
from bot.slack_files import CopiedFiles
from bot.slack_users import SlackProfile
from bot.text.markdown import escape_markdown
from store.actions import (
    Actor,
    add_customer_message,
    add_note,
    add_staff_reply,
    delete_slack_message,
    edit_slack_message,
    message_by_slack_ts,
    open_ticket,
    ticket_by_slack_thread,
)
from store.actions.common import thread_line
from store.models import Direction, Origin, Ticket, Visibility

log = logging.getLogger(__name__)

NOTE_PREFIX = re.compile(r"^\s*note:\s*", re.IGNORECASE)
DIRECT_REPLY_EXCERPT = 300
# How old a message may be for an edit or deletion of it to count as overtaking it.
OVERTAKE_WINDOW_SECONDS = 600.0
DELETED_KIND = "slack_deleted_unseen"


class StaffMessageKind(enum.Enum):
    REPLY = "reply"
    NOTE = "note"
    COMMAND = "command"


def classify_staff_message(text: str) -> StaffMessageKind:
    """What a staff member's message in a triage thread is, from its text as typed."""
    if NOTE_PREFIX.match(text):
        return StaffMessageKind.NOTE
    if text.lstrip().startswith(COMMAND_PREFIX):
        return StaffMessageKind.COMMAND
    return StaffMessageKind.REPLY


def without_note_prefix(markdown: str) -> str:
    return NOTE_PREFIX.sub("", markdown, count=1)


def _held(session: Session, channel: str, ts: str) -> bool:
    return message_by_slack_ts(session, channel, ts) is not None


def _deleted_key(channel: str, ts: str) -> str:
    return f"slack-deleted:{channel}:{ts}"


def _fresh(message_ts: str, event_ts: str | None) -> bool:
    try:
        return event_ts is not None and float(event_ts) - float(message_ts) < OVERTAKE_WINDOW_SECONDS
    except ValueError:
        return False


def _ticket_number_for_thread(session: Session, channel: str, thread_ts: str) -> int | None:
    ticket = ticket_by_slack_thread(session, channel, thread_ts)
    return ticket.number if ticket is not None else None


async def handle_posted(
    ctx: InboundContext, claim: Claim, message: PostedMessage, home_team: str | None
) -> None:
    if await ctx.read(lambda s: seen_before(s, _deleted_key(message.channel, message.ts))):
        await ctx.apply(claim)  # deleted before it reached us
    elif message.channel == ctx.triage_channel:
        await _triage_message(ctx, claim, message)
    elif message.is_reply:
        await _customer_thread_reply(ctx, claim, message, home_team)
    elif ctx.is_intake_channel(message.channel):
        await _new_request(ctx, claim, message, home_team)
    else:
        await ctx.apply(claim)


# ----- customers -----


@dataclass(frozen=True)
class Request:
    """A top-level message that opens a ticket, with the slow parts (profile, text, files) done."""

    message: PostedMessage
    profile: SlackProfile
    body: str
    copied: CopiedFiles


async def _request_from(ctx: InboundContext, message: PostedMessage) -> Request | None:
    """None when the message opens nothing: staff talking in a customer channel is conversation."""
    profile = await ctx.directory.profile_or_standin(message.user)
    if profile.is_bot or await ctx.staff.is_staff(message.user):
        return None
    body = await ctx.markdown(message.raw)
    copied = await ctx.copier.copy(message.files)
    return Request(message, profile, body, copied)


def _open_request(
    session: Session, ctx: InboundContext, request: Request, home_team: str | None
) -> Ticket | None:
    message = request.message
    # Checked inside the transaction: another delivery of this message may have won.
    if _held(session, message.channel, message.ts) or ticket_by_slack_thread(
        session, message.channel, message.ts
    ):
        return None
    customer = customer_for_profile(session, request.profile, home_team)
    ticket = open_ticket(
        session,
        ctx.desk.policy,
        subject=subject_from(request.body, message.files),
        requester=customer,
        origin=Origin.SLACK,
        actor=Actor(customer.name, slack_id=message.user, email=customer.email),
        origin_channel=message.channel,
        origin_thread_ts=message.ts,
    )
    _add_customer_message(
        session, ctx, ticket, message, request.profile, home_team, request.body, request.copied
    )
    log.info("ticket #%s opened from Slack message %s/%s", ticket.number, message.channel, message.ts)
    return ticket


async def _new_request(
    ctx: InboundContext, claim: Claim, message: PostedMessage, home_team: str | None
) -> None:
    known = await ctx.read(
        lambda s: (
            _held(s, message.channel, message.ts)
            or _ticket_number_for_thread(s, message.channel, message.ts) is not None
        )
    )
    request = None if known else await _request_from(ctx, message)
    if request is None:
        await ctx.apply(claim)
        return
    await ctx.apply(claim, lambda session: _open_request(session, ctx, request, home_team))


async def _unseen_request(ctx: InboundContext, reply: PostedMessage) -> Request | None:
    """The request a reply answers, when the reply's event overtook the request's own.

    Slack delivers events concurrently (and retries a failed one later), so a colleague's quick
    answer can reach us before the message that opened the thread. If that message is a fresh
    top-level request in an intake channel, it is taken in now, with the reply; its own event,
    arriving later, is then a duplicate.
    """
    assert reply.thread_ts is not None
    if not ctx.is_intake_channel(reply.channel) or not _fresh(reply.thread_ts, reply.ts):
        return None
    thread_ts = reply.thread_ts
    if await ctx.read(lambda s: seen_before(s, _deleted_key(reply.channel, thread_ts))):
        return None
    raw = await ctx.fetch_message(reply.channel, thread_ts)
    root = parse_message(raw, reply.channel) if raw is not None else None
    if root is None or root.is_reply or root.ts != thread_ts:
        return None
    return await _request_from(ctx, root)


def _add_customer_message(
    session: Session,
    ctx: InboundContext,
    ticket: Ticket,
    message: PostedMessage,
    profile: SlackProfile,
    home_team: str | None,
    body: str,
    copied: CopiedFiles,
) -> None:
    customer = customer_for_profile(session, profile, home_team)
    add_customer_message(
        session,
        ctx.desk.policy,
        ticket,
        customer=customer,
        body_markdown=body,
        source="slack",
        slack_channel=message.channel,
        slack_ts=message.ts,
        attachments=copied.attachments,
    )
    if copied.skipped:
        thread_line(session, ticket, skipped_files_line([escape_markdown(s) for s in copied.skipped]))


async def _customer_thread_reply(
    ctx: InboundContext, claim: Claim, message: PostedMessage, home_team: str | None
) -> None:
    assert message.thread_ts is not None
    thread_ts = message.thread_ts
    held = await ctx.read(lambda s: _held(s, message.channel, message.ts))
    number = (
        None if held else await ctx.read(lambda s: _ticket_number_for_thread(s, message.channel, thread_ts))
    )
    root = None if held or number is not None else await _unseen_request(ctx, message)
    if number is None and root is None:
        # A thread that belongs to no ticket is conversation, not a request.
        await ctx.apply(claim)
        return
    profile = await ctx.directory.profile_or_standin(message.user)
    if profile.is_bot:
        await ctx.apply(claim)
        return

    def ticket_of_thread(session: Session) -> Ticket | None:
        ticket = ticket_by_slack_thread(session, message.channel, thread_ts)
        if ticket is None and root is not None:
            ticket = _open_request(session, ctx, root, home_team)
        return ticket

    if await ctx.staff.is_staff(message.user):
        await _staff_wrote_to_customer(ctx, claim, message, profile, ticket_of_thread)
        return
    body = await ctx.markdown(message.raw)
    copied = await ctx.copier.copy(message.files)

    def change(session: Session) -> None:
        ticket = ticket_of_thread(session)
        if ticket is None or _held(session, message.channel, message.ts):
            return
        _add_customer_message(session, ctx, ticket, message, profile, home_team, body, copied)

    await ctx.apply(claim, change)


async def _staff_wrote_to_customer(
    ctx: InboundContext,
    claim: Claim,
    message: PostedMessage,
    profile: SlackProfile,
    ticket_of_thread: Callable[[Session], Ticket | None],
) -> None:
    """Staff answered in the customer's thread itself: the triage thread should know."""
    body = await ctx.markdown(message.raw)
    excerpt = body if len(body) <= DIRECT_REPLY_EXCERPT else body[:DIRECT_REPLY_EXCERPT] + "…"
    quoted = "\n".join("> " + line for line in excerpt.splitlines() or [""])

    def change(session: Session) -> None:
        ticket = ticket_of_thread(session)
        if ticket is not None:
            name = escape_markdown(profile.shown_name)
            thread_line(session, ticket, f"{name} wrote in the customer's thread directly:\n{quoted}")

    await ctx.apply(claim, change)


# ----- staff in the triage thread -----


async def _triage_message(ctx: InboundContext, claim: Claim, message: PostedMessage) -> None:
    if not message.is_reply:
        await ctx.apply(claim)  # top-level talk in the triage channel is the team's own
        return
    assert message.thread_ts is not None
    thread_ts = message.thread_ts
    number = await ctx.read(
        lambda s: (
            None
            if _held(s, message.channel, message.ts)
            else _ticket_number_for_thread(s, message.channel, thread_ts)
        )
    )
    if number is None:
        await ctx.apply(claim)
        return
    staff = await ctx.staff.recheck(message.user)
    kind = classify_staff_message(message.text) if staff else StaffMessageKind.NOTE
    if kind is StaffMessageKind.COMMAND:
        await run_command(ctx, claim, message, number)
        return
    profile = await ctx.directory.profile_or_standin(message.user)
    if profile.is_bot:
        await ctx.apply(claim)
        return
    body = await ctx.markdown(message.raw)
    author = Actor(profile.shown_name, slack_id=message.user, email=profile.email)
    if kind is StaffMessageKind.NOTE:
        if not staff:
            log.info("message from %s, not staff, kept as a note on ticket #%s", message.user, number)

        def note(session: Session) -> None:
            ticket = ticket_by_slack_thread(session, message.channel, thread_ts)
            if ticket is None or _held(session, message.channel, message.ts):
                return
            add_note(
                session,
                ticket,
                author=author,
                body_markdown=without_note_prefix(body),
                slack_channel=message.channel,
                slack_ts=message.ts,
            )

        await ctx.apply(claim, note)
        return
    copied = await ctx.copier.copy(message.files)

    def reply(session: Session) -> None:
        ticket = ticket_by_slack_thread(session, message.channel, thread_ts)
        if ticket is None or _held(session, message.channel, message.ts):
            return
        add_staff_reply(
            session,
            ctx.desk.policy,
            ticket,
            author=author,
            body_markdown=body,
            slack_channel=message.channel,
            slack_ts=message.ts,
            attachments=copied.attachments,
        )
        if copied.skipped:
            thread_line(session, ticket, skipped_files_line([escape_markdown(s) for s in copied.skipped]))

    await ctx.apply(claim, reply)


# ----- edits and deletions -----


async def handle_edited(
    ctx: InboundContext, claim: Claim, edit: MessageEdited, home_team: str | None
) -> None:
    message = edit.message
    held = await ctx.read(
        lambda s: (
            (m.direction, m.visibility)
            if (m := message_by_slack_ts(s, message.channel, message.ts)) is not None
            else None
        )
    )
    if held is None:
        if _fresh(message.ts, edit.edited_ts):
            # The edit overtook its message: take it as the message (the original, arriving
            # later, is then a duplicate). A command edited this way runs once, as edited.
            await handle_posted(ctx, claim, message, home_team)
        else:
            await ctx.apply(claim)  # not ours: chatter, or a message from before we watched
        return
    direction, visibility = held
    body = await ctx.markdown(message.raw)
    make_note = direction == Direction.OUTBOUND and bool(NOTE_PREFIX.match(message.text))
    if direction == Direction.OUTBOUND and (make_note or visibility == Visibility.INTERNAL):
        body = without_note_prefix(body)

    def change(session: Session) -> str | None:
        stored = message_by_slack_ts(session, message.channel, message.ts)
        ticket = session.get(Ticket, stored.ticket_id) if stored is not None else None
        if stored is None or ticket is None:
            return None
        return edit_slack_message(session, ticket, stored, body_markdown=body, make_note=make_note)

    outcome = await ctx.apply(claim, change)
    log.info("edit of %s/%s: %s", message.channel, message.ts, outcome)


async def handle_deleted(ctx: InboundContext, claim: Claim, deletion: MessageDeleted) -> None:
    channel, ts = deletion.channel, deletion.ts

    def change(session: Session) -> str | None:
        stored = message_by_slack_ts(session, channel, ts)
        ticket = session.get(Ticket, stored.ticket_id) if stored is not None else None
        if stored is None or ticket is None:
            if _fresh(ts, deletion.deleted_ts):
                record_once(session, DELETED_KIND, _deleted_key(channel, ts))
                return "remembered"
            return None
        return delete_slack_message(session, ticket, stored)

    outcome = await ctx.apply(claim, change)
    if outcome is not None:
        log.info("deletion of %s/%s: %s", channel, ts, outcome)
