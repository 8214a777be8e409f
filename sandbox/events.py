"""The payloads Slack sends an app: Events API envelopes, slash command forms, interactivity payloads.

Shapes follow Slack's Events API and interactivity references (outer `event_callback` envelope with
`authorizations`, `is_ext_shared_channel`, `context_team_id`; `message` subtypes `message_changed`,
`message_deleted`, `file_share`; `block_actions`, `message_action`, `view_submission`).
"""

from __future__ import annotations

import copy
import time
from typing import Any

from sandbox.render import live_replies, message_json, view_json
from sandbox.state import JSON, Message, SlackState, View
from sandbox.workspace import Channel, User


def channel_type(channel: Channel | None) -> str:
    return "group" if channel is not None and channel.is_private else "channel"


def envelope(state: SlackState, event: JSON, channel_id: str | None = None) -> JSON:
    ws = state.workspace
    channel = ws.channels.get(channel_id) if channel_id else None
    outer: JSON = {
        "token": ws.verification_token,
        "team_id": ws.home.id,
        "context_team_id": ws.home.id,
        "context_enterprise_id": None,
        "api_app_id": ws.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": state.next_event_id(),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": ws.home.id,
                "user_id": ws.bot_user,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": bool(channel and channel.is_ext_shared),
    }
    if channel is not None:
        outer["event_context"] = f"4-{channel.id}-{event.get('type', '')}"
    return outer


def message_event(state: SlackState, message: Message) -> JSON:
    """A new message as the Events API delivers it (the stored form plus channel fields)."""
    event = message_json(state, message)
    # Events carry no thread summary; the parent's counts arrive via conversations.replies.
    for key in ("reply_count", "reply_users_count", "latest_reply", "reply_users", "is_locked", "subscribed"):
        event.pop(key, None)
    if message.metadata is not None:
        # Slack includes metadata in events for apps subscribed to message metadata; ours is ours.
        event["metadata"] = copy.deepcopy(message.metadata)
    event["channel"] = message.channel
    event["event_ts"] = message.ts
    event["channel_type"] = channel_type(state.workspace.channels.get(message.channel))
    return _with_file_stubs(state, event)


def _with_file_stubs(state: SlackState, message: JSON) -> JSON:
    """Slack Connect: an event names a file of another organization by a stub, and `files.info`
    gives the rest (api.slack.com/events/message/file_share, "Slack Connect files")."""
    home = state.workspace.home.id
    files = message.get("files")
    if files:
        message["files"] = [
            file if file.get("user_team", home) == home else _file_stub(file["id"]) for file in files
        ]
    return message


def _file_stub(file_id: str) -> JSON:
    return {
        "id": file_id,
        "mode": "file_access",
        "file_access": "check_file_info",
        "created": 0,
        "timestamp": 0,
        "user": "",
    }


def message_changed_event(state: SlackState, message: Message, previous: JSON) -> JSON:
    event_ts = state.next_ts()
    current = _with_file_stubs(state, message_json(state, message))
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": current,
        "previous_message": previous,
        "channel": message.channel,
        "hidden": True,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel_type(state.workspace.channels.get(message.channel)),
    }


def message_deleted_event(state: SlackState, message: Message, previous: JSON) -> JSON:
    """How Slack tells of a message just deleted: `message_deleted`; but a thread's first message
    that has replies stays as a tombstone, told with `message_changed` (its message's subtype
    `tombstone`)."""
    if not message.is_reply and live_replies(state, message):
        return message_changed_event(state, message, previous)
    channel = message.channel
    event_ts = state.next_ts()
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "deleted_ts": previous["ts"],
        "channel": channel,
        "previous_message": previous,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel_type(state.workspace.channels.get(channel)),
    }


def reaction_event(state: SlackState, kind: str, user: str, message: Message, name: str) -> JSON:
    return {
        "type": kind,
        "user": user,
        "reaction": name,
        "item": {"type": "message", "channel": message.channel, "ts": message.ts},
        "item_user": message.user,
        "event_ts": state.next_ts(),
    }


def member_event(
    state: SlackState, kind: str, user: str, channel: Channel, inviter: str | None = None
) -> JSON:
    event: JSON = {
        "type": kind,
        "user": user,
        "channel": channel.id,
        "channel_type": "G" if channel.is_private else "C",
        "team": state.workspace.team_of(user),
        "event_ts": state.next_ts(),
    }
    if inviter:
        event["inviter"] = inviter
    return event


def left_event(state: SlackState, channel: Channel, actor: str) -> JSON:
    """What Slack sends the app when it is removed from a channel: `channel_left`, or `group_left`
    for a private one; `actor_id` is who removed it."""
    return {
        "type": "group_left" if channel.is_private else "channel_left",
        "channel": channel.id,
        "actor_id": actor,
        "event_ts": state.next_ts(),
    }


def app_home_opened_event(state: SlackState, user: str, dm_channel: str, view: View | None) -> JSON:
    event: JSON = {
        "type": "app_home_opened",
        "user": user,
        "channel": dm_channel,
        "tab": "home",
        "event_ts": state.next_ts(),
    }
    if view is not None:
        event["view"] = view_json(state, view)
    return event


def user_ref(user: User) -> JSON:
    return {"id": user.id, "username": user.name, "name": user.name, "team_id": user.team_id}


def team_ref(state: SlackState, user: User) -> JSON:
    team = state.workspace.teams.get(user.team_id, state.workspace.home)
    return {"id": team.id, "domain": team.domain}


def slash_command_form(
    state: SlackState,
    user: User,
    channel: Channel,
    command: str,
    text: str,
    response_url: str,
    trigger_id: str,
) -> dict[str, str]:
    team = state.workspace.teams.get(user.team_id, state.workspace.home)
    return {
        "token": state.workspace.verification_token,
        "team_id": team.id,
        "team_domain": team.domain,
        "channel_id": channel.id,
        "channel_name": channel.name,
        "user_id": user.id,
        "user_name": user.name,
        "command": command,
        "text": text,
        "api_app_id": state.workspace.app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def _interaction_base(state: SlackState, kind: str, user: User, trigger_id: str) -> JSON:
    return {
        "type": kind,
        "token": state.workspace.verification_token,
        "api_app_id": state.workspace.app_id,
        "team": team_ref(state, user),
        "user": user_ref(user),
        "enterprise": None,
        "is_enterprise_install": False,
        "trigger_id": trigger_id,
    }


def message_action_payload(
    state: SlackState,
    user: User,
    channel: Channel,
    message: Message,
    callback_id: str,
    response_url: str,
    trigger_id: str,
) -> JSON:
    payload = _interaction_base(state, "message_action", user, trigger_id)
    payload.update(
        {
            "action_ts": state.next_ts(),
            "callback_id": callback_id,
            "channel": {"id": channel.id, "name": channel.name},
            "message_ts": message.ts,
            "message": message_json(state, message),
            "response_url": response_url,
        }
    )
    return payload


def find_action_element(blocks: list[JSON] | None, action_id: str) -> tuple[str | None, JSON | None]:
    """The block_id and element of the interactive element with this action_id, if the blocks have it."""
    for block in blocks or []:
        elements: list[Any] = []
        if block.get("type") == "actions":
            elements = block.get("elements", [])
        elif isinstance(block.get("accessory"), dict):
            elements = [block["accessory"]]
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block.get("block_id"), element
    return None, None


def block_actions_payload(
    state: SlackState,
    user: User,
    channel: Channel,
    message: Message,
    action: JSON,
    response_url: str,
    trigger_id: str,
) -> JSON:
    payload = _interaction_base(state, "block_actions", user, trigger_id)
    payload.update(
        {
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": channel.id,
                "is_ephemeral": False,
            },
            "channel": {"id": channel.id, "name": channel.name},
            "message": message_json(state, message),
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [action],
        }
    )
    return payload


def build_action(message: Message, action_id: str, value: str | None, state: SlackState) -> JSON:
    block_id, element = find_action_element(message.blocks, action_id)
    action: JSON = {
        "action_id": action_id,
        "block_id": block_id or "",
        "type": (element or {}).get("type", "button"),
        "action_ts": state.next_ts(),
    }
    if element is not None and "text" in element:
        action["text"] = copy.deepcopy(element["text"])
    chosen = value if value is not None else (element or {}).get("value")
    if action["type"] in ("static_select", "external_select"):
        action["selected_option"] = {"text": {"type": "plain_text", "text": chosen or ""}, "value": chosen}
    elif action["type"] == "users_select":
        action["selected_user"] = chosen
    elif chosen is not None:
        action["value"] = chosen
    return action


def view_submission_payload(
    state: SlackState, user: User, view: View, values: dict[str, dict[str, Any]], trigger_id: str
) -> JSON:
    payload = _interaction_base(state, "view_submission", user, trigger_id)
    rendered = view_json(state, view)
    rendered["state"] = {"values": normalise_values(values)}
    payload.update({"view": rendered, "response_urls": []})
    return payload


def normalise_values(values: dict[str, dict[str, Any]]) -> JSON:
    """Accept {block: {action: "text"}} as shorthand for a plain_text_input value."""
    out: JSON = {}
    for block_id, actions in values.items():
        out[block_id] = {}
        for action_id, value in actions.items():
            if isinstance(value, dict):
                out[block_id][action_id] = value
            else:
                out[block_id][action_id] = {"type": "plain_text_input", "value": value}
    return out
