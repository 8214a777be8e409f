"""`!verb` typed in a ticket's triage thread: run by the triage command executor, never delivered.

A command is taken at most once per Slack message: its (channel, ts) is recorded as processed in
the transaction that finishes the intake item, before it runs. Running it twice (a close, then a
reopen by a retried event) would be worse than a lost command, which its author sees at once and
types again. The answer is shown only to its author, in the thread.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot.inbound_context import Claim, InboundContext, record_once
from bot.inbound_events import PostedMessage

log = logging.getLogger(__name__)

PROCESSED_KIND = "slack_command_done"
COMMAND_PREFIX = "!"
UNAVAILABLE = "Commands typed in the thread are not available on this desk yet; use `/desk` instead."


def _processed_key(message: PostedMessage) -> str:
    return f"slack-command:{message.channel}:{message.ts}"


def _mark_processed(session: Session, message: PostedMessage) -> bool:
    """Record that this message's command ran; False when it had been run before."""
    return record_once(session, PROCESSED_KIND, _processed_key(message))


def _executor() -> Callable[..., Any] | None:
    # The executor is the triage side's; the desk still works (with `/desk`) without it.
    try:
        module = importlib.import_module("bot.commands")
    except ModuleNotFoundError:
        return None
    run = getattr(module, "run_thread_command", None)
    return run if callable(run) else None


async def _execute(ctx: InboundContext, message: PostedMessage, number: int) -> str | None:
    run = _executor()
    if run is None:
        return UNAVAILABLE
    module = importlib.import_module("bot.commands.base")
    profile = await ctx.directory.profile_or_standin(message.user)
    command_ctx = module.CommandContext(
        desk=ctx.desk,
        user_id=message.user,
        user_name=profile.shown_name,
        is_staff=True,
        workspace_url=await ctx.workspace_url(),
    )
    # The executor takes the words after the `!`; mentions stay `<@U…>` as Slack sent them.
    words = message.text.strip().removeprefix(COMMAND_PREFIX).strip()
    if inspect.iscoroutinefunction(run):
        reply = await run(command_ctx, number, words)
    else:
        reply = await asyncio.to_thread(run, command_ctx, number, words)
    text = getattr(reply, "text", None)
    return str(text) if text else None


async def run_command(ctx: InboundContext, claim: Claim, message: PostedMessage, number: int) -> None:
    first = await ctx.apply(claim, lambda session: _mark_processed(session, message))
    if not first:
        return
    answer = await _execute(ctx, message, number)
    if not answer:
        return
    try:
        await ctx.client.chat_postEphemeral(
            channel=message.channel, user=message.user, thread_ts=message.thread_ts, text=answer
        )
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
        # The command's effects are in the store and on the card; only its answer is lost.
        log.warning("could not show the answer to %s's command: %s", message.user, error)
