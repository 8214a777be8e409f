"""Staff turn any message into a ticket: the `ticket` reaction or the "Create ticket" shortcut.

The message's author is the requester — also when it is a staff member (an internal request) —
and the ticket's customer thread is the message's thread, where the acknowledgement goes and
staff replies will appear. A message becomes a ticket once: a second reaction or shortcut on it,
or on a message already held by a ticket, changes nothing. A reaction is answered by the card and
the acknowledgement alone; the shortcut, an explicit request, always gets an answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot.inbound_context import (
    Claim,
    InboundContext,
    add_slack_customer_message,
    customer_for_profile,
    subject_from,
)
from bot.inbound_events import TICKET_REACTION, PostedMessage, ReactionAdded, TicketShortcut, parse_message
from bot.response_url import answer_privately
from bot.slack_users import is_transient
from store.actions import (
    Actor,
    message_by_slack_ts,
    open_ticket,
    ticket_by_slack_thread,
)
from store.models import Origin, Ticket

log = logging.getLogger(__name__)


ONLY_STAFF = "Only support staff (members of the triage channel) can turn messages into tickets."
NOT_FROM_APPS = "Messages from apps and bots can't become tickets."
NOT_IN_TRIAGE = "Messages in the triage channel are the team's own; they don't become tickets."
NOT_IN_CHANNEL = (
    "I'm not a member of this channel, so I couldn't answer the customer here. "
    "Invite me (`/invite @servicedesk`) and try again."
)
MESSAGE_GONE = "I couldn't read that message any more; was it deleted?"
NOT_IN_DIRECT_MESSAGES = (
    "I can't answer in a direct message, so that message can't become a ticket. Ask them to write in "
    "a channel I'm in, or open one for them by email with `/desk new`."
)
# Slack's ids of one-to-one direct messages: no app can be invited into one.
DIRECT_MESSAGE_PREFIX = "D"


@dataclass(frozen=True)
class Outcome:
    text: str
    number: int | None = None


def _already(session: Session, message: PostedMessage) -> str | None:
    """Why this message cannot become a new ticket, if it belongs to one already."""
    held = message_by_slack_ts(session, message.channel, message.ts)
    if held is not None:
        ticket = session.get(Ticket, held.ticket_id)
        return f"That message is already part of ticket #{ticket.number}." if ticket else None
    owner = ticket_by_slack_thread(session, message.channel, message.thread_root)
    if owner is not None:
        return f"That thread already belongs to ticket #{owner.number}; its messages are added there."
    return None


async def open_from_message(
    ctx: InboundContext, claim: Claim, message: PostedMessage, requested_by: str, home_team: str | None
) -> Outcome:
    """Open a ticket from `message` for the staff member `requested_by` (already known as staff)."""
    if message.channel == ctx.triage_channel:
        await ctx.apply(claim)
        return Outcome(NOT_IN_TRIAGE)
    # Before the app check: what the desk posts in a customer's thread (the acknowledgement, a staff
    # reply under the staff member's name) belongs to that ticket, and the answer should say which.
    reason = await ctx.read(lambda s: _already(s, message))
    if reason is not None:
        await ctx.apply(claim)
        return Outcome(reason)
    if not message.user:
        await ctx.apply(claim)
        return Outcome(NOT_FROM_APPS)
    author = await ctx.directory.profile_or_standin(message.user)
    if author.is_bot:
        await ctx.apply(claim)
        return Outcome(NOT_FROM_APPS)
    requester_of_change = await ctx.directory.profile_or_standin(requested_by)
    body = await ctx.markdown(message.raw)
    copied = await ctx.copier.copy(message.files)

    def change(session: Session) -> Outcome:
        late_reason = _already(session, message)
        if late_reason is not None:
            return Outcome(late_reason)
        customer = customer_for_profile(session, author, home_team)
        ticket = open_ticket(
            session,
            ctx.desk.policy,
            subject=subject_from(body, copied.names),
            requester=customer,
            origin=Origin.SLACK,
            actor=Actor(requester_of_change.shown_name, slack_id=requested_by),
            origin_channel=message.channel,
            origin_thread_ts=message.thread_root,
            now=claim.work.received_at,  # when it was asked for, not when a worker got to it
        )
        add_slack_customer_message(
            session, ctx.desk.policy, ticket, customer, message, body, copied, now=claim.work.received_at
        )
        return Outcome(f"Opened ticket #{ticket.number}.", ticket.number)

    outcome = await ctx.apply(claim, change)
    if outcome is None:
        return Outcome("")
    if outcome.number is not None:
        log.info(
            "ticket #%s opened from %s/%s by %s", outcome.number, message.channel, message.ts, requested_by
        )
    return outcome


# ----- the reaction -----


async def handle_reaction(
    ctx: InboundContext, claim: Claim, reaction: ReactionAdded, home_team: str | None
) -> None:
    if reaction.reaction != TICKET_REACTION or reaction.channel == ctx.triage_channel:
        await ctx.apply(claim)
        return
    # Customers use emoji too: only staff's `ticket` counts, and nothing is said to anyone else.
    # Someone not known as staff is re-read first (at most every 30 s): they may just have joined.
    if not await ctx.staff.recheck(reaction.user):
        await ctx.apply(claim)
        return
    if await ctx.read(lambda s: message_by_slack_ts(s, reaction.channel, reaction.ts) is not None):
        await ctx.apply(claim)
        return
    raw = await ctx.fetch_message(reaction.channel, reaction.ts)
    message = parse_message(raw, reaction.channel) if raw is not None else None
    if message is None:
        await ctx.apply(claim)
        return
    outcome = await open_from_message(ctx, claim, message, reaction.user, home_team)
    if outcome.number is None and outcome.text:
        log.info("ticket reaction on %s/%s: %s", reaction.channel, reaction.ts, outcome.text)


# ----- the shortcut -----


async def _bot_is_member(ctx: InboundContext, channel: str) -> bool:
    try:
        answer = await ctx.client.conversations_info(channel=channel)
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
        # Slack unavailable for a moment: go ahead; a delivery that then fails says so in the thread.
        return is_transient(error)
    return bool((answer.get("channel") or {}).get("is_member"))


async def handle_shortcut(
    ctx: InboundContext, claim: Claim, shortcut: TicketShortcut, home_team: str | None
) -> None:
    # Re-read for someone not known as staff, as for `/desk`: they may just have joined.
    if not await ctx.staff.recheck(shortcut.user):
        await ctx.apply(claim)
        outcome = Outcome(ONLY_STAFF)
    elif shortcut.message.channel != ctx.triage_channel and not await _bot_is_member(
        ctx, shortcut.message.channel
    ):
        await ctx.apply(claim)
        # "Invite me" would be no help where no app can be invited.
        direct = shortcut.message.channel.startswith(DIRECT_MESSAGE_PREFIX)
        outcome = Outcome(NOT_IN_DIRECT_MESSAGES if direct else NOT_IN_CHANNEL)
    else:
        outcome = await open_from_message(ctx, claim, shortcut.message, shortcut.user, home_team)
    if outcome.text and shortcut.response_url:
        await answer_privately(shortcut.response_url, outcome.text)
