"""Staff in a ticket's triage thread: a public reply, a note (`note:`), or a command (`!`).

Someone the desk does not know as staff writing there (the staff list is re-read first: they may
just have joined) gets a note, never a reply: nothing reaches a customer unless staff wrote it.
The text a message is classified by is its text as typed; formatting around the prefix keeps it what
it looks like: `*note:*` makes a note, `*!close*` a command (answered with the plain command to
type, not run).
"""

from __future__ import annotations

import enum
import logging
import re

import aiohttp
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot.blocks.messages import top_level_command
from bot.commands.registry import find_verb
from bot.inbound_commands import command_words, is_command, run_command
from bot.inbound_context import (
    Claim,
    InboundContext,
    holds_message,
    skipped_files_line,
    ticket_number_for_thread,
)
from bot.inbound_events import PostedMessage
from store.actions import Actor, add_note, add_staff_reply, ticket_by_slack_thread
from store.actions.common import thread_line

log = logging.getLogger(__name__)

# `note:` as typed, and as Slack sends it when the word is formatted (*note:*, _note_:, `note:`, ~note:~):
# a note that looks like one in the thread must never go to the customer as a reply.
_MARKS = r"[*_~`\\]*"  # formatting, and the Markdown escapes the stored body gives them
# The colon as typed, or full width (as a Chinese or Japanese input method types it).
NOTE_PREFIX = re.compile(
    rf"^\s*(?P<open>{_MARKS})\s*note(?P<shut>{_MARKS})[:：](?P<after>{_MARKS})\s*", re.IGNORECASE
)


class StaffMessageKind(enum.Enum):
    REPLY = "reply"
    NOTE = "note"
    COMMAND = "command"


def classify_staff_message(text: str) -> StaffMessageKind:
    """What a staff member's message in a triage thread is, from its text as typed."""
    if NOTE_PREFIX.match(text):
        return StaffMessageKind.NOTE
    if is_command(text):
        return StaffMessageKind.COMMAND
    return StaffMessageKind.REPLY


def without_note_prefix(markdown: str) -> str:
    """The note's text: the prefix gone, and the closing marks of a note formatted as a whole."""
    found = NOTE_PREFIX.match(markdown)
    if found is None:
        return markdown
    rest = markdown[found.end() :]
    marks = found.group("open").replace("\\", "")
    closed = (found.group("shut") + found.group("after")).replace("\\", "")
    if marks and not closed and rest.rstrip().endswith(marks[::-1]) and rest.count(marks) == 1:
        return rest.rstrip()[: -len(marks)]
    return rest


async def _point_command_to_a_thread(ctx: InboundContext, message: PostedMessage) -> None:
    """`!close 42` typed at the top of the triage channel runs nothing (no thread says which
    ticket), and without a word its author would take it as done: staff who typed a verb are told
    where it works. Other talk that starts with `!` ("!! heads up") is the team's own."""
    words = (command_words(message.text) or "").split()
    if not words or find_verb(words[0]) is None:
        return
    if not await ctx.staff.recheck(message.user):
        return
    try:
        await ctx.client.chat_postEphemeral(
            channel=message.channel, user=message.user, text=top_level_command(words[0].lower())
        )
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
        log.warning("could not tell %s where `!` commands work: %s", message.user, error)


async def handle_triage_message(ctx: InboundContext, claim: Claim, message: PostedMessage) -> None:
    if not message.is_reply:
        await ctx.apply(claim)  # top-level talk in the triage channel is the team's own
        await _point_command_to_a_thread(ctx, message)
        return
    assert message.thread_ts is not None
    thread_ts = message.thread_ts
    # The thread's own ticket: a command in a merged-away ticket's thread is refused (it takes no
    # more triage) rather than run on the ticket it went into; notes and replies land there.
    number = await ctx.read(
        lambda s: (
            None
            if holds_message(s, message.channel, message.ts)
            else ticket_number_for_thread(s, message.channel, thread_ts, follow_merges=False)
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
    # A note's files are kept with it too: the ticket's record holds what the team attached.
    copied = await ctx.copier.copy(message.files)
    if kind is StaffMessageKind.NOTE:
        if not staff:
            log.info("message from %s, not staff, kept as a note (thread of #%s)", message.user, number)

        def note(session: Session) -> None:
            ticket = ticket_by_slack_thread(session, message.channel, thread_ts)
            if ticket is None or holds_message(session, message.channel, message.ts):
                return
            add_note(
                session,
                ticket,
                author=author,
                body_markdown=without_note_prefix(body),
                slack_channel=message.channel,
                slack_ts=message.ts,
                attachments=copied.attachments,
            )
            if copied.skipped:
                thread_line(session, ticket, skipped_files_line(copied.skipped))

        await ctx.apply(claim, note)
        return

    # Only files, and none of them copied: there is nothing to send (a blank mail, an empty post).
    nothing_to_send = (
        "it has no text and none of its files could be copied (see below)"
        if not body.strip() and not copied.attachments and copied.skipped
        else None
    )

    def reply(session: Session) -> None:
        ticket = ticket_by_slack_thread(session, message.channel, thread_ts)
        if ticket is None or holds_message(session, message.channel, message.ts):
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
            nothing_to_send=nothing_to_send,
        )
        if copied.skipped:
            thread_line(session, ticket, skipped_files_line(copied.skipped))

    await ctx.apply(claim, reply)
