"""`/desk`: run the command and answer with the ephemeral reply in the ack itself.

Bolt answers Slack when the listener returns (process_before_response), so the command runs
before the ack; every verb is one short transaction, well inside Slack's 3 seconds. The answer
is only ever seen by the person who typed the command.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.commands import CommandReply, run_desk_command
from bot.listeners.command_rate import TOO_FAST
from bot.listeners.triage_context import TriageSide
from store.db import StoreUnavailable

log = logging.getLogger(__name__)

COMMAND = "/desk"
STORE_DOWN = "The desk cannot reach its database right now, so nothing changed. Try again in a minute."


async def answer(ack: AsyncAck, reply: CommandReply) -> None:
    await ack(response_type="ephemeral", text=reply.text, blocks=reply.blocks)


def register(app: AsyncApp, side: TriageSide) -> None:
    @app.command(COMMAND)
    async def desk_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        user_id = str(command.get("user_id") or "")
        text = str(command.get("text") or "")
        if not side.rate.allow(user_id):
            await answer(ack, CommandReply(TOO_FAST, ok=False))
            return
        try:
            ctx = await side.context(user_id, command.get("user_name"), mentioned_in=[text])
            reply = await asyncio.to_thread(run_desk_command, ctx, text)
        except StoreUnavailable as error:
            log.error("/desk not run, database unavailable: %s", error)
            reply = CommandReply(STORE_DOWN, ok=False)
        await answer(ack, reply)
