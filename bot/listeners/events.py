"""Events API: every subscribed event is stored, then acknowledged; the worker does the rest.

Storing first means an accepted event is never lost (a failure answers 500 and Slack retries);
the stored `event_id` makes Slack's retries and duplicates change nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.edge_threads import EDGE_POOL, run_in
from bot.inbound_events import TICKET_REACTION, is_from_a_bot
from store import inbound
from store.context import Desk
from store.db import Database

log = logging.getLogger(__name__)

SUBSCRIBED_EVENTS = (
    "message",  # also matches message_changed / message_deleted, unlike app.message()
    "reaction_added",
    "member_joined_channel",
    "member_left_channel",
    # What Slack sends the app itself when it is removed from a public / private channel (it is no
    # member then, so no member_left_channel of its own reliably reaches it).
    "channel_left",
    "group_left",
    "app_home_opened",
)
SLACK_EVENT = "slack_event"


async def store_at_edge(key: str, payload: dict[str, Any], lane: str | None, *, db: Database) -> bool:
    """`store.inbound.accept` on the edge's threads: False when the key was stored before."""
    # On the edge's own threads: queued behind the worker's database work on the default pool, an
    # event would be answered after Slack's 3 s and retried for as long as that lasted.
    return await run_in(EDGE_POOL, inbound.accept, db, SLACK_EVENT, key, payload=payload, lane=lane)


def from_a_bot(event: dict[str, Any]) -> bool:
    """Bots (ours above all) are recognised by bot_id/app_id, not by subtype; an edit by its
    edited message."""
    if is_from_a_bot(event):
        return True
    if event.get("subtype") != "message_changed":
        return False
    inner = event.get("message") or {}
    # A thread's first message deleted while it has replies (a customer's request always has the
    # acknowledgement) stays as a tombstone that Slack posts as Slackbot: that is a person's
    # deletion, not a bot's message, and the worker takes it as one.
    return inner.get("subtype") != "tombstone" and is_from_a_bot(inner)


def event_lane(event: dict[str, Any]) -> str | None:
    """Events of one channel are handled in order (a message before its edit or deletion)."""
    channel = event.get("channel") or (event.get("item") or {}).get("channel")
    return f"slack:{channel}" if isinstance(channel, str) else None


def worth_storing(event: dict[str, Any], desk: Desk) -> bool:
    kind = event.get("type")
    if kind == "message":
        if from_a_bot(event):
            return False
        channel = event.get("channel")
        if channel == desk.settings.triage_channel or channel in desk.settings.intake_channels:
            return True
        # Elsewhere a ticket can only come from the ticket emoji or the shortcut, so only its
        # thread's replies, edits and deletions can matter; the worker drops the rest.
        return bool(event.get("thread_ts")) or event.get("subtype") in ("message_changed", "message_deleted")
    if kind in ("member_joined_channel", "member_left_channel"):
        return event.get("channel") == desk.settings.triage_channel
    if kind in ("channel_left", "group_left"):
        # Removed from an intake channel: the triage channel is told. From the triage channel
        # itself nothing can be posted there; its refusals are kept and reported (`check`, /healthz).
        return event.get("channel") in desk.settings.intake_channels
    if kind == "reaction_added":
        # Only the ticket emoji does anything; the desk's own receipts (hourglass, tick, lock) come
        # back as reactions too, and Bolt no longer knows our user id to drop them.
        return event.get("reaction") == TICKET_REACTION
    return True


def register(app: AsyncApp, desk: Desk) -> None:
    async def store_event(body: dict[str, Any], ack: AsyncAck) -> None:
        event = body.get("event") or {}
        event_id = body.get("event_id")
        if isinstance(event_id, str) and worth_storing(event, desk):
            stored = await store_at_edge(f"slack:{event_id}", body, event_lane(event), db=desk.db)
            if not stored:
                log.info("duplicate Slack event %s ignored", event_id)
        await ack()

    for name in SUBSCRIBED_EVENTS:
        app.event(name)(store_event)
