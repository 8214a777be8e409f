"""chat.* and reactions.*: posting, editing, deleting and reacting, with Slack's checks and errors."""

from __future__ import annotations

import re
from typing import Any

from sandbox.api_base import TS_PATTERN, Call, SlackError, method
from sandbox.blocks import validate_blocks
from sandbox.events import message_changed_event, message_deleted_event, message_event, reaction_event
from sandbox.render import message_json, permalink
from sandbox.state import JSON, Ephemeral, Message

MAX_TEXT = 40_000
REACTION_NAME = re.compile(r"^[a-z0-9_+\-']+(::skin-tone-[2-6])?$")
THREAD_SUMMARY_KEYS = (
    "reply_count",
    "reply_users_count",
    "latest_reply",
    "reply_users",
    "is_locked",
    "subscribed",
)


def check_content(call: Call, *, require_content: bool = True) -> tuple[str | None, Any, Any]:
    """Validate text, blocks and metadata as chat.postMessage and chat.update do."""
    text = call.get("text")
    blocks = call.structured("blocks", error="invalid_blocks_format")
    attachments = call.structured("attachments", error="invalid_attachments")
    if require_content and not text and not blocks and not attachments:
        raise SlackError("no_text")
    if text is not None and len(text) > MAX_TEXT:
        raise SlackError("msg_too_long")
    if blocks is not None:
        errors = validate_blocks(blocks)
        if errors:
            raise SlackError(
                "invalid_blocks",
                errors=errors,
                response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
            )
    metadata = call.structured("metadata", error="invalid_metadata_format")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not isinstance(metadata.get("event_payload", {}), dict)
    ):
        raise SlackError("invalid_metadata_format")
    return text, blocks, metadata


def response_message(call: Call, message: Message) -> JSON:
    data = message_json(call.state, message, include_metadata=True)
    for key in THREAD_SUMMARY_KEYS:
        data.pop(key, None)
    return data


@method("chat.postMessage", scope="chat:write")
def chat_post_message(call: Call) -> JSON:
    state = call.state
    ws = state.workspace
    channel = call.channel(need_member=True)
    if channel.is_archived:
        raise SlackError("is_archived")
    text, blocks, metadata = check_content(call)
    thread_ts = call.get("thread_ts")
    if thread_ts is not None and not TS_PATTERN.match(thread_ts):
        raise SlackError("invalid_thread_ts")
    customize = "chat:write.customize" in ws.scopes
    username = call.get("username") if customize else None
    icon_url = call.get("icon_url") if customize else None
    icon_emoji = call.get("icon_emoji") if customize else None
    broadcast = call.flag("reply_broadcast") and thread_ts is not None
    subtype = None
    if username or icon_url or icon_emoji:
        # A bot message with its own identity is a classic "bot_message" (no `user` field).
        subtype = "bot_message"
    elif broadcast:
        subtype = "thread_broadcast"
    message = Message(
        channel=channel.id,
        ts=state.next_ts(),
        user=ws.bot_user,
        team=ws.home.id,
        text=text or "",
        blocks=blocks,
        thread_ts=thread_ts,
        subtype=subtype,
        bot_id=ws.bot_id,
        app_id=ws.app_id,
        username=username,
        icon_url=icon_url,
        icon_emoji=icon_emoji,
        metadata=metadata,
        reply_broadcast=broadcast,
    )
    state.add_message(message)
    if message.visible:
        state.emit(message_event(state, message), channel.id)
    return {"ok": True, "channel": channel.id, "ts": message.ts, "message": response_message(call, message)}


def _own_message(call: Call, error: str) -> tuple[Any, Message]:
    channel = call.channel()
    message = call.message(channel)
    if message.bot_id != call.state.workspace.bot_id:
        raise SlackError(error)
    return channel, message


@method("chat.update", scope="chat:write")
def chat_update(call: Call) -> JSON:
    state = call.state
    channel, message = _own_message(call, "cant_update_message")
    text, blocks, metadata = check_content(call, require_content=False)
    previous = message_json(state, message)
    if text is None and blocks is None and metadata is None and call.structured("attachments") is None:
        raise SlackError("no_text")
    if text is not None:
        message.previous_texts.append(message.text)
        message.text = text
    if blocks is not None:
        # Slack keeps the previous blocks when none are given; an empty list removes them.
        message.blocks = blocks or None
    if metadata is not None:
        message.metadata = metadata
    message.edited = {"user": state.workspace.bot_user, "ts": state.next_ts()}
    state.changed()
    state.emit(message_changed_event(state, message, previous), channel.id)
    return {
        "ok": True,
        "channel": channel.id,
        "ts": message.ts,
        "text": message.text,
        "message": response_message(call, message),
    }


@method("chat.delete", scope="chat:write")
def chat_delete(call: Call) -> JSON:
    state = call.state
    channel, message = _own_message(call, "cant_delete_message")
    previous = message_json(state, message)
    message.deleted = True
    state.changed()
    state.emit(message_deleted_event(state, message, previous), channel.id)
    return {"ok": True, "channel": channel.id, "ts": message.ts}


@method("chat.postEphemeral", scope="chat:write")
def chat_post_ephemeral(call: Call) -> JSON:
    state = call.state
    channel = call.channel(need_member=True)
    user = call.user()
    if user.id not in channel.members:
        raise SlackError("user_not_in_channel")
    text, blocks, _ = check_content(call)
    ts = state.next_ts()
    with state.lock:
        state.ephemerals.append(
            Ephemeral(channel.id, user.id, text or "", blocks, ts, thread_ts=call.get("thread_ts"))
        )
    state.changed()
    return {"ok": True, "message_ts": ts}


@method("chat.getPermalink")
def chat_get_permalink(call: Call) -> JSON:
    channel = call.channel()
    message = call.message(channel, "message_ts")
    return {"ok": True, "channel": channel.id, "permalink": permalink(call.state, channel.id, message)}


def _reaction_target(call: Call) -> tuple[Any, Message]:
    channel = call.channel()
    if call.state.workspace.bot_user not in channel.members:
        raise SlackError("not_in_channel")
    return channel, call.message(channel, "timestamp")


def _reaction_name(call: Call) -> str:
    name = (call.get("name") or "").strip(":")
    if not REACTION_NAME.match(name):
        raise SlackError("invalid_name")
    return name


@method("reactions.add", scope="reactions:write")
def reactions_add(call: Call) -> JSON:
    state = call.state
    channel, message = _reaction_target(call)
    name = _reaction_name(call)
    bot = state.workspace.bot_user
    users = message.reactions.setdefault(name, [])
    if bot in users:
        raise SlackError("already_reacted")
    users.append(bot)
    state.changed()
    state.emit(reaction_event(state, "reaction_added", bot, message, name), channel.id)
    return {"ok": True}


@method("reactions.remove", scope="reactions:write")
def reactions_remove(call: Call) -> JSON:
    state = call.state
    channel, message = _reaction_target(call)
    name = _reaction_name(call)
    bot = state.workspace.bot_user
    users = message.reactions.get(name, [])
    if bot not in users:
        raise SlackError("no_reaction")
    users.remove(bot)
    if not users:
        del message.reactions[name]
    state.changed()
    state.emit(reaction_event(state, "reaction_removed", bot, message, name), channel.id)
    return {"ok": True}


@method("reactions.get", scope="reactions:read")
def reactions_get(call: Call) -> JSON:
    channel, message = _reaction_target(call)
    data = message_json(call.state, message)
    return {"ok": True, "type": "message", "channel": channel.id, "message": data}
