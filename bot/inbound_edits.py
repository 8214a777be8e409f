"""Edits and deletions of Slack messages.

For a message the desk holds, the store actions decide what an edit or deletion still changes (the
undo window) and mirror it. Slack delivers events concurrently, so an edit or a deletion can arrive
before the message it is about: an edit of a fresh message we do not hold yet is taken as the
message itself (it carries the whole message, as edited); a deletion of one is remembered, so the
message arriving late is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy.orm import Session

from bot.inbound_context import Claim, InboundContext, deleted_key, fresh, record_once
from bot.inbound_events import MessageDeleted, MessageEdited
from bot.inbound_messages import handle_posted
from bot.inbound_triage import NOTE_PREFIX, without_note_prefix
from store.actions import delete_slack_message, edit_slack_message, message_by_slack_ts
from store.actions.messages import LockedMessage, lock_for_change
from store.models import Direction, Visibility

log = logging.getLogger(__name__)

DELETED_KIND = "slack_deleted_unseen"


def locked_by_slack_ts(session: Session, channel: str, ts: str) -> LockedMessage | None:
    """The message we hold for a Slack message, and its ticket, locked for an edit or deletion."""
    stored = message_by_slack_ts(session, channel, ts)
    return lock_for_change(session, stored.id) if stored is not None else None


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
        if fresh(message.ts, edit.edited_ts):
            # The edit overtook its message: take it as the message (the original, arriving
            # later, is then a duplicate). A command edited this way runs once, as edited. A
            # message written as a note stays one, as it would had it arrived first
            # (`edit_slack_message` never makes a note public): it is taken with its prefix.
            if NOTE_PREFIX.match(edit.previous_text) and not NOTE_PREFIX.match(message.text):
                message = replace(message, text=f"note: {message.text}")
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
        locked = locked_by_slack_ts(session, message.channel, message.ts)
        if locked is None:
            return None
        stored, ticket = locked
        return edit_slack_message(session, ticket, stored, body_markdown=body, make_note=make_note)

    outcome = await ctx.apply(claim, change)
    log.info("edit of %s/%s: %s", message.channel, message.ts, outcome)


async def handle_deleted(ctx: InboundContext, claim: Claim, deletion: MessageDeleted) -> None:
    channel, ts = deletion.channel, deletion.ts

    def change(session: Session) -> str | None:
        locked = locked_by_slack_ts(session, channel, ts)
        if locked is None:
            if fresh(ts, deletion.deleted_ts):
                record_once(session, DELETED_KIND, deleted_key(channel, ts))
                return "remembered"
            return None
        stored, ticket = locked
        return delete_slack_message(session, ticket, stored)

    outcome = await ctx.apply(claim, change)
    if outcome is not None:
        log.info("deletion of %s/%s: %s", channel, ts, outcome)
