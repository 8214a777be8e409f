"""The "Create ticket" message shortcut (`create_ticket`), on any message, thread replies too.

Like events, the payload is stored and acknowledged at once; the worker checks that the person is
staff, opens the ticket and answers them through the payload's response_url.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.listeners.events import store_at_edge
from store.context import Desk

log = logging.getLogger(__name__)

CREATE_TICKET = "create_ticket"


def register(app: AsyncApp, desk: Desk) -> None:
    @app.message_shortcut(CREATE_TICKET)
    async def create_ticket(body: dict[str, Any], ack: AsyncAck) -> None:
        # The trigger id is unique per use: a retried delivery of the same use changes nothing.
        key = body.get("trigger_id") or body.get("action_ts")
        if isinstance(key, str):
            channel = (body.get("channel") or {}).get("id")
            stored = await store_at_edge(
                f"slack:shortcut:{key}",
                body,
                # In order with the channel's events: the message before its shortcut.
                f"slack:{channel}" if isinstance(channel, str) else None,
                db=desk.db,
            )
            if not stored:
                log.info("duplicate shortcut %s ignored", key)
        await ack()
