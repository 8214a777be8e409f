"""Edits and deletions of Slack messages.

For a message the desk holds, the store actions decide what an edit or deletion still changes (the
undo window) and mirror it. Slack delivers events concurrently, so an edit or a deletion can arrive
before the message it is about: an edit of a fresh message we do not hold yet is taken as the
message itself (it carries the whole message, as edited); a deletion of one is remembered, so the
message arriving late is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy.orm import Session

from bot.inbound_commands import (
    NOTE_EDITED_INTO_COMMAND,
    run_command,
    tell_command_edited,
    was_taken_as_command,
)
from bot.inbound_context import (
    Claim,
    InboundContext,
    deleted_key,
    fresh,
    record_once,
    ticket_number_for_thread,
)
from bot.inbound_events import MessageDeleted, MessageEdited, PostedMessage
from bot.inbound_messages import handle_posted
from bot.inbound_triage import NOTE_PREFIX, StaffMessageKind, classify_staff_message, without_note_prefix
from bot.slack_files import copied_name
from store.actions import delete_slack_message, edit_slack_message, message_by_slack_ts
from store.actions.messages import Becomes, LockedMessage, drop_slack_files, lock_for_change
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
        if await ctx.read(lambda s: was_taken_as_command(s, message)):
            # A command (never stored as a message) that ran already: not taken as a new message,
            # which would run it again, or, its `!` gone, deliver it to the customer.
            await ctx.apply(claim)
            if message.text.strip() != edit.previous_text.strip():  # not an unfurl's redraw
                await tell_command_edited(ctx, message)
            return
        if fresh(message.ts, edit.edited_ts):
            # The edit overtook its message: take it as the message (the original, arriving
            # later, is then a duplicate). A command edited this way runs once, as edited. A
            # message written as a note stays one, as it would had it arrived first
            # (`edit_slack_message` never makes a note public): it is taken with its prefix.
            if NOTE_PREFIX.match(edit.previous_text) and not NOTE_PREFIX.match(message.text):
                message = replace(message, text=f"note: {message.text}")
            if edit.edited_ts is not None:
                claim = replace(claim, taken_edit=(message.channel, message.ts, edit.edited_ts))
            await handle_posted(ctx, claim, message, home_team)
        else:
            await ctx.apply(claim)  # not ours: chatter, or a message from before we watched
        return
    direction, visibility = held
    body = await ctx.markdown(message.raw)
    kind = classify_staff_message(message.text) if direction == Direction.OUTBOUND else None
    becomes: Becomes | None = None
    if kind is StaffMessageKind.NOTE:
        becomes = "note"
    elif kind is StaffMessageKind.COMMAND and visibility == Visibility.PUBLIC:
        becomes = "command"  # a public reply edited into a command: taken back, then run
    if direction == Direction.OUTBOUND and (becomes == "note" or visibility == Visibility.INTERNAL):
        body = without_note_prefix(body)
    # Files deleted from a staff reply: named as the copier named them when the reply came in.
    removed = (
        [
            (
                copied_name(f),
                f["size"] if isinstance(f.get("size"), int) else None,
            )
            for f in edit.removed_files
        ]
        if direction == Direction.OUTBOUND
        else []
    )

    def change(session: Session) -> str | None:
        locked = locked_by_slack_ts(session, message.channel, message.ts)
        if locked is None:
            return None
        stored, ticket = locked
        dropped = drop_slack_files(session, ticket, stored, removed)
        if dropped != "unchanged":
            log.info("files deleted from %s/%s: %s", message.channel, message.ts, dropped)
        return edit_slack_message(
            session, ticket, stored, body_markdown=body, becomes=becomes, edit_ts=edit.edited_ts
        )

    if becomes == "command" and message.thread_ts is not None:
        await _edited_into_command(ctx, claim, message, change)
        return
    outcome = await ctx.apply(claim, change)
    log.info("edit of %s/%s: %s", message.channel, message.ts, outcome)
    if (
        kind is StaffMessageKind.COMMAND
        and visibility == Visibility.INTERNAL
        and message.text.strip() != edit.previous_text.strip()  # not an unfurl's redraw
    ):
        # A note edited into a command stays a note (what was written as internal is never run
        # by an edit); without a word its author, seeing `!close` in the thread, thinks it done.
        await tell_command_edited(ctx, message, NOTE_EDITED_INTO_COMMAND)


async def _edited_into_command(
    ctx: InboundContext, claim: Claim, message: PostedMessage, change: Callable[[Session], str | None]
) -> None:
    """The reply is taken back and its command run, as had it been typed so; a reply already on its
    way stays as it was, and its command does not run (the thread says so)."""
    assert message.thread_ts is not None
    thread_ts = message.thread_ts
    number = await ctx.read(
        lambda s: ticket_number_for_thread(s, message.channel, thread_ts, follow_merges=False)
    )
    if number is None or not await ctx.staff.recheck(message.user):
        outcome = await ctx.apply(claim, change)
        log.info("edit of %s/%s into a command, not run: %s", message.channel, message.ts, outcome)
        return
    await run_command(ctx, claim, message, number, unless=lambda s: change(s) != "made_command")


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
