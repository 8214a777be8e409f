"""Messages people post: new requests, customer threads, and (handed on) triage threads.

- A top-level message in an intake channel from someone who is not staff opens a ticket.
- A reply in a ticket's customer thread is added to the ticket (a customer's) or pointed out in
  the triage thread (staff answering the customer directly, outside the desk).
- A reply in a ticket's triage thread is staff's (`bot.inbound_triage`).

Slack delivers events concurrently (and retries a failed one later), so a reply can reach us
before the message that opened its thread: that message is then taken in with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.delivery.texts import files_sent
from bot.inbound_context import (
    Claim,
    InboundContext,
    add_slack_customer_message,
    customer_for_profile,
    deleted_key,
    fresh,
    holds_message,
    posted_at,
    record_once,
    seen_before,
    subject_from,
    ticket_number_for_thread,
)
from bot.inbound_events import PostedMessage, parse_message
from bot.inbound_triage import handle_triage_message
from bot.slack_files import CopiedFiles, copied_name
from bot.slack_users import SlackProfile
from bot.text.to_slack import markdown_to_mrkdwn
from store.actions import Actor, open_ticket, ticket_by_slack_thread, ticket_owning_slack_thread
from store.actions.common import literal, thread_line
from store.actions.messages import record_direct_reply
from store.models import Origin, Ticket

log = logging.getLogger(__name__)

DIRECT_REPLY_EXCERPT = 300
# The record that staff's message in a customer thread was quoted into the triage thread.
DIRECT_KIND = "slack_direct_quoted"


async def handle_posted(
    ctx: InboundContext, claim: Claim, message: PostedMessage, home_team: str | None
) -> None:
    if await ctx.read(lambda s: seen_before(s, deleted_key(message.channel, message.ts))):
        await ctx.apply(claim)  # deleted before it reached us
    elif message.channel == ctx.triage_channel:
        await handle_triage_message(ctx, claim, message)
    elif message.is_reply:
        await _customer_thread_reply(ctx, claim, message, home_team)
    elif ctx.is_intake_channel(message.channel):
        await _new_request(ctx, claim, message, home_team)
    else:
        await ctx.apply(claim)


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
    session: Session, ctx: InboundContext, request: Request, home_team: str | None, arrived: datetime | None
) -> Ticket | None:
    """`arrived`: when the event that brought the request was stored. The ticket and every time
    measured from it (first response, resolution, waiting) start when the message was written
    (`posted_at`), not when a worker got to it after a deploy or a backlog, as a mail's start when
    it was answered 250."""
    message = request.message
    written = posted_at(message.ts, arrived)
    # Checked inside the transaction: another delivery of this message may have won.
    if holds_message(session, message.channel, message.ts) or ticket_by_slack_thread(
        session, message.channel, message.ts
    ):
        return None
    customer = customer_for_profile(session, request.profile, home_team)
    ticket = open_ticket(
        session,
        ctx.desk.policy,
        subject=subject_from(request.body, request.copied.names),
        requester=customer,
        origin=Origin.SLACK,
        actor=Actor(customer.name, slack_id=message.user, email=customer.email),
        origin_channel=message.channel,
        origin_thread_ts=message.ts,
        now=written,
    )
    add_slack_customer_message(
        session, ctx.desk.policy, ticket, customer, message, request.body, request.copied, now=written
    )
    log.info("ticket #%s opened from Slack message %s/%s", ticket.number, message.channel, message.ts)
    return ticket


async def _new_request(
    ctx: InboundContext, claim: Claim, message: PostedMessage, home_team: str | None
) -> None:
    known = await ctx.read(
        lambda s: (
            holds_message(s, message.channel, message.ts)
            or ticket_number_for_thread(s, message.channel, message.ts) is not None
        )
    )
    request = None if known else await _request_from(ctx, message)
    if request is None:
        await ctx.apply(claim)
        return
    await ctx.apply(
        claim, lambda session: _open_request(session, ctx, request, home_team, claim.work.received_at)
    )


async def _unseen_request(ctx: InboundContext, reply: PostedMessage) -> Request | None:
    """The request a reply answers, when the reply's event overtook the request's own.

    Slack delivers events concurrently (and retries a failed one later), so a colleague's quick
    answer can reach us before the message that opened the thread. If that message is a fresh
    top-level request in an intake channel, it is taken in now, with the reply; its own event,
    arriving later, is then a duplicate.
    """
    assert reply.thread_ts is not None
    if not ctx.is_intake_channel(reply.channel) or not fresh(reply.thread_ts, reply.ts):
        return None
    thread_ts = reply.thread_ts
    if await ctx.read(lambda s: seen_before(s, deleted_key(reply.channel, thread_ts))):
        return None
    raw = await ctx.fetch_message(reply.channel, thread_ts)
    root = parse_message(raw, reply.channel) if raw is not None else None
    if root is None or root.is_reply or root.ts != thread_ts:
        return None
    return await _request_from(ctx, root)


async def _customer_thread_reply(
    ctx: InboundContext, claim: Claim, message: PostedMessage, home_team: str | None
) -> None:
    assert message.thread_ts is not None
    thread_ts = message.thread_ts
    held = await ctx.read(lambda s: holds_message(s, message.channel, message.ts))
    number = (
        None if held else await ctx.read(lambda s: ticket_number_for_thread(s, message.channel, thread_ts))
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
            # The request arrived no later than the reply that brought it in.
            ticket = _open_request(session, ctx, root, home_team, claim.work.received_at)
        return ticket

    if await ctx.staff.is_staff(message.user) and not await ctx.read(
        lambda s: _requested_by(s, message.channel, thread_ts, message.user)
    ):
        await _staff_wrote_to_customer(ctx, claim, message, profile, ticket_of_thread)
        return
    body = await ctx.markdown(message.raw)
    copied = await ctx.copier.copy(message.files)

    def change(session: Session) -> None:
        ticket = ticket_of_thread(session)
        if ticket is None or holds_message(session, message.channel, message.ts):
            return
        customer = customer_for_profile(session, profile, home_team)
        add_slack_customer_message(session, ctx.desk.policy, ticket, customer, message, body, copied)

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
    if message.files:
        # The files are not copied (the message is not part of the ticket), but the team must see
        # what the customer was sent: files alone would otherwise quote nothing at all.
        sent = files_sent([copied_name(f) for f in message.files])
        excerpt = f"{excerpt}\n{sent}" if excerpt.strip() else sent
    # As mrkdwn, not raw Markdown: Markdown escapes a typed `<!channel>` with a backslash, which
    # Slack ignores, so it would ping the triage channel (and `<url|label>` would hide a link).
    quoted = "\n".join("> " + line for line in markdown_to_mrkdwn(excerpt).splitlines() or [""])

    def change(session: Session) -> None:
        ticket = ticket_of_thread(session)
        # Once per message: its edits, and Slack delivering it again, add no more lines.
        if ticket is not None and record_once(
            session, DIRECT_KIND, f"slack-direct:{message.channel}:{message.ts}"
        ):
            name = literal(profile.shown_name)
            thread_line(session, ticket, f"{name} wrote in the customer's thread directly:\n{quoted}")
            record_direct_reply(
                session,
                ticket,
                Actor(profile.shown_name, slack_id=message.user),
                slack_ts=message.ts,
                at=posted_at(message.ts, claim.work.received_at),
            )

    await ctx.apply(claim, change)


def _requested_by(session: Session, channel: str, thread_ts: str, user_id: str) -> bool:
    """Whether this thread is `user_id`'s own request (a colleague's message made a ticket): what
    they write there is the requester's, not staff talking to a customer. The thread's own ticket
    is asked, merged into another or not: the one it went into may be someone else's."""
    ticket = ticket_owning_slack_thread(session, channel, thread_ts)
    return ticket is not None and ticket.requester.slack_user_id == user_id
