"""`/desk`: run the command and answer with the ephemeral reply in the ack itself.

Bolt answers Slack when the listener returns (process_before_response), so the command runs
before the ack. Every verb is one short transaction, run within COMMAND_TIME_LIMIT of the request's
arrival (store.deadline): a verb that would commit after Slack has shown the person an error is
rolled back and answered as not done. A request received again (the same trigger id: a replay)
is not run again. The answer is only ever seen by the person who typed the command.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.commands import CommandContext, CommandReply, run_desk_command, store_trouble
from bot.edge_threads import EDGE_POOL, run_in
from bot.listeners.command_rate import TOO_FAST
from bot.listeners.triage_context import TriageSide
from store import inbound
from store.db import StoreUnavailable
from store.deadline import within

log = logging.getLogger(__name__)

COMMAND = "/desk"
# Requests run where they arrive, recorded under their trigger id so that a replay changes nothing.
SLACK_REQUEST = "slack_request"
# From the request's arrival to the verb's commit. Slack shows the person an error once the ack is
# 3 s late; a verb committed after that would have done what they were told had failed.
COMMAND_TIME_LIMIT = 2.5

ALREADY_RUN = "That request was already received; it was not run again."


def first_delivery(side: TriageSide, body: dict[str, Any]) -> bool:
    """Record the request's trigger id (unique per use): False for a replay of a request received
    before. Recorded before the work runs, so a replay is refused even while the first still runs."""
    trigger_id = body.get("trigger_id")
    if not isinstance(trigger_id, str) or not trigger_id:
        return True  # Slack always sends one; a request without it has nothing to be told apart by
    return inbound.remember(side.desk.db, SLACK_REQUEST, f"slack:trigger:{trigger_id}")


async def answer(ack: AsyncAck, reply: CommandReply) -> None:
    await ack(response_type="ephemeral", text=reply.text, blocks=reply.blocks)


def register(app: AsyncApp, side: TriageSide) -> None:
    @app.command(COMMAND)
    async def desk_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        deadline = time.monotonic() + COMMAND_TIME_LIMIT
        user_id = str(command.get("user_id") or "")
        text = str(command.get("text") or "")
        if not side.rate.allow(user_id):
            await answer(ack, CommandReply(TOO_FAST, ok=False))
            return
        try:
            ctx = await side.context(user_id, command.get("user_name"), mentioned_in=[text])
            reply = await run_in(EDGE_POOL, run_in_time, deadline, side, command, ctx, text)
        except StoreUnavailable as error:
            log.error("/desk not run or its outcome unknown: %s", error)
            reply = CommandReply(store_trouble(error), ok=False)
        await answer(ack, reply)


def run_in_time(
    deadline: float, side: TriageSide, command: dict[str, Any], ctx: CommandContext, text: str
) -> CommandReply:
    with within(deadline):
        if not first_delivery(side, command):
            log.warning("/desk request %s received again; not run", command.get("trigger_id"))
            return CommandReply(ALREADY_RUN, ok=False)
        return run_desk_command(ctx, text)
