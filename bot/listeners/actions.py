"""The card's controls: status and priority menus, the assignee picker, the labels multi-select.

They run the same verbs as `/desk` (staff only). On success the card is updated in place by the
outbox and the thread gets its line; only a refusal or an error is answered, to the presser alone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import ACTION_ASSIGNEE, ACTION_LABELS, ACTION_PRIORITY, ACTION_STATUS, parse_ticket_number
from bot.commands import CommandContext, CommandReply, run_card_action, store_trouble
from bot.edge_threads import EDGE_POOL, run_in
from bot.listeners.command_rate import TOO_FAST
from bot.listeners.commands import COMMAND_TIME_LIMIT, first_delivery
from bot.listeners.triage_context import TriageSide
from bot.response_url import answer_privately
from store.db import StoreUnavailable
from store.deadline import within

log = logging.getLogger(__name__)

CARD_ACTIONS = (ACTION_STATUS, ACTION_PRIORITY, ACTION_ASSIGNEE, ACTION_LABELS)


async def tell_presser(side: TriageSide, body: dict[str, Any], text: str) -> None:
    """Only the person who pressed sees it: through the response_url, or an ephemeral message."""
    if body.get("response_url"):
        await answer_privately(str(body["response_url"]), text)
        return
    channel = (body.get("channel") or {}).get("id")
    user = (body.get("user") or {}).get("id")
    if channel and user:
        await side.client.chat_postEphemeral(channel=channel, user=user, text=text)


def register(app: AsyncApp, side: TriageSide) -> None:
    async def card_control(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        # As for `/desk`: Slack shows the presser an error once the answer is 3 s late, so a change
        # that would commit after that is rolled back and they are told, not applied behind them.
        deadline = time.monotonic() + COMMAND_TIME_LIMIT
        await ack()
        number = parse_ticket_number(str(action.get("block_id") or ""))
        if number is None:
            log.warning("card action %s without a ticket in its block_id", action.get("action_id"))
            return
        user = body.get("user") or {}
        if not side.rate.allow(str(user.get("id") or "")):
            await tell_presser(side, body, TOO_FAST)
            return
        try:
            picked = action.get("selected_user")
            ctx = await side.context(
                str(user.get("id") or ""),
                user.get("username") or user.get("name"),
                mentioned_in=[f"<@{picked}>"] if isinstance(picked, str) else [],
            )
            reply = await run_in(EDGE_POOL, run_in_time, deadline, side, body, ctx, number, action)
        except StoreUnavailable as error:
            log.error("card action not run or its outcome unknown: %s", error)
            reply = CommandReply(store_trouble(error), ok=False)
        if not reply.ok:
            await tell_presser(side, body, reply.text)

    for action_id in CARD_ACTIONS:
        app.action(action_id)(card_control)


def run_in_time(
    deadline: float,
    side: TriageSide,
    body: dict[str, Any],
    ctx: CommandContext,
    number: int,
    action: dict[str, Any],
) -> CommandReply:
    with within(deadline):
        return run_once(side, body, ctx, number, action)


def run_once(
    side: TriageSide, body: dict[str, Any], ctx: CommandContext, number: int, action: dict[str, Any]
) -> CommandReply:
    if not first_delivery(side, body):
        log.warning("card action %s received again; not run", body.get("trigger_id"))
        return CommandReply("", ok=True)  # the press was handled the first time
    return run_card_action(ctx, number, action, body.get("message"))
