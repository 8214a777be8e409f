"""`!verb` typed in a ticket's triage thread: run by the triage command executor, never delivered.

A command is taken at most once per Slack message: its (channel, ts) is recorded as processed in
the transaction that finishes the intake item, before it runs. Running it twice (a close, then a
reopen by a retried event) would be worse than a lost command, which its author sees at once and
types again. The answer is shown only to its author, in the thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot.commands import CommandContext, CommandReply, run_thread_command, store_trouble
from bot.inbound_context import Claim, InboundContext, record_once, seen_before
from bot.inbound_events import PostedMessage
from store.db import StoreUnavailable

log = logging.getLogger(__name__)

PROCESSED_KIND = "slack_command_done"
COMMAND_PREFIX = "!"
# As typed, and as a Chinese or Japanese input method types it (full width): a command typed
# either way must never reach the customer as a reply.
COMMAND_PREFIXES = (COMMAND_PREFIX, "！")


def command_words(text: str) -> str | None:
    """The words after a command's `!`, or None when the text is not a command."""
    stripped = text.strip()
    for prefix in COMMAND_PREFIXES:
        if stripped.startswith(prefix):
            return stripped.removeprefix(prefix).strip()
    return None


# A command as Slack sends it when its author formatted it (`*!close*`, `_!note_ …`,
# `` `!priority high` ``, `~!assign me~`): meant as a command, so never a reply to the customer.
_FORMATTED_COMMAND = re.compile(r"^\s*(?P<open>[*_~`]+)\s*[!！]")


def is_command(text: str) -> bool:
    """Whether a staff message, as typed, is a command: `!` (or `！`) first, formatted or not."""
    return command_words(text) is not None or _FORMATTED_COMMAND.match(text) is not None


def unformatted_command(text: str) -> str | None:
    """The command to type for one sent in formatting (`*!close*` -> `!close`); None when plain.

    The marks close either at the end (`*!label +bug*`) or after the verb (`_!note_ words`)."""
    found = _FORMATTED_COMMAND.match(text)
    if found is None:
        return None
    shut = found.group("open")[::-1]
    rest = text[found.end() :].strip()
    if rest.endswith(shut):
        rest = rest[: -len(shut)].rstrip()
    else:
        verb, space, tail = rest.partition(" ")
        if verb.endswith(shut):
            rest = verb[: -len(shut)] + space + tail
    return COMMAND_PREFIX + rest


def formatted_command_hint(plain: str) -> str:
    return (
        "That was not sent to the customer, and not run: a command is typed without formatting, "
        f"so that what runs is plain to see. To run it, send `{plain}`"
    )


def _processed_key(message: PostedMessage) -> str:
    return f"slack-command:{message.channel}:{message.ts}"


def _mark_processed(session: Session, message: PostedMessage) -> bool:
    """Record that this message's command ran; False when it had been run before."""
    return record_once(session, PROCESSED_KIND, _processed_key(message))


def was_taken_as_command(session: Session, message: PostedMessage) -> bool:
    """Whether this Slack message was taken as a command when it came in (whatever it says now)."""
    return seen_before(session, _processed_key(message))


EDITED_COMMAND = (
    "Editing a command changes nothing: it was taken as first sent, and is never sent to the "
    "customer. To run a command, type it as a new message."
)


NOTE_EDITED_INTO_COMMAND = (
    "This stays an internal note: a note edited into a command is not run. To run a command, "
    "type it as a new message."
)


async def tell_command_edited(
    ctx: InboundContext, message: PostedMessage, text: str = EDITED_COMMAND
) -> None:
    """Its author edited a command that already ran: an edit neither runs it again (a command runs
    once) nor makes it a reply (it was typed as a command, so it stays off the customer's side),
    and without a word the corrected command would look done."""
    try:
        await ctx.client.chat_postEphemeral(
            channel=message.channel, user=message.user, thread_ts=message.thread_ts, text=text
        )
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
        log.warning("could not tell %s that an edited command was not run: %s", message.user, error)


async def _execute(ctx: InboundContext, message: PostedMessage, number: int) -> CommandReply:
    plain = unformatted_command(message.text)
    if plain is not None:
        # Not run: which words the formatting covers is a guess (`*!close* once the fix ships`),
        # and a command runs once with no undo (a close mails the customer). Its author sees the
        # answer at once and sends the plain command.
        return CommandReply(formatted_command_hint(plain), ok=False)
    profile = await ctx.directory.profile_or_standin(message.user)
    # The executor reads names from the profile cache synchronously: look up whom it mentions
    # first, so `!assign @bob` says "Bob Baker", not an id (and refuses someone Slack does not know).
    unknown = await ctx.directory.look_up_mentions([message.raw])
    command_ctx = CommandContext(
        desk=ctx.desk,
        user_id=message.user,
        user_name=profile.shown_name,
        # Only staff reach here (bot.inbound_triage checks); the executor checks again.
        is_staff=True,
        workspace_url=await ctx.workspace_url(),
        unknown_users=unknown,
    )
    # The executor takes the words after the `!`; mentions stay `<@U…>` as Slack sent them.
    words = command_words(message.text) or ""
    # Synchronous, one store transaction per verb: off the event loop.
    return await asyncio.to_thread(run_thread_command, command_ctx, number, words)


async def run_command(
    ctx: InboundContext,
    claim: Claim,
    message: PostedMessage,
    number: int,
    *,
    unless: Callable[[Session], bool] | None = None,
) -> None:
    """Run the command once. `unless` (in the same transaction) can still call it off: a reply
    edited into a command runs it only if the reply could be taken back."""

    def take(session: Session) -> bool:
        if unless is not None and unless(session):
            return False
        return _mark_processed(session, message)

    if not await ctx.apply(claim, take):
        return
    try:
        reply = await _execute(ctx, message, number)
    except StoreUnavailable as error:
        # The command is recorded as taken, so this item is not tried again and no retry would
        # tell its author; say what is known (not done, or not known whether done) now.
        log.error("!command in #%s not run or its outcome unknown: %s", number, error)
        reply = CommandReply(store_trouble(error), ok=False)
    if not reply.text and not reply.blocks:
        return
    try:
        await ctx.client.chat_postEphemeral(
            channel=message.channel,
            user=message.user,
            thread_ts=message.thread_ts,
            text=reply.text,
            blocks=reply.blocks,
        )
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
        # The command's effects are in the store and on the card; only its answer is lost.
        log.warning("could not show the answer to %s's command: %s", message.user, error)
