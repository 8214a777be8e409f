"""Slack-shaped JSON for the emulator's objects: messages, files, users, channels, views.

The shapes follow the examples in Slack's method and object reference pages; fields the product never
reads are kept where they are cheap, so code written against the emulator sees what Slack sends.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from sandbox.state import JSON, File, Message, SlackState, View
from sandbox.workspace import Channel, User, avatar_url

AVATAR_SIZES = (24, 32, 48, 72, 192, 512)
TOMBSTONE_TEXT = "This message was deleted."


def bot_profile(state: SlackState, bot_id: str) -> JSON:
    ws = state.workspace
    user = next((u for u in ws.users.values() if u.bot_id == bot_id), None)
    name = user.name if user else bot_id
    return {
        "id": bot_id,
        "deleted": False,
        "name": name,
        "updated": 1_700_000_000,
        "app_id": user.app_id if user else ws.app_id,
        "icons": {f"image_{size}": avatar_url(user.id if user else bot_id, size) for size in (36, 48, 72)},
        "team_id": user.team_id if user else ws.home.id,
    }


_URL_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def url_name(name: str) -> str:
    """A file's name as the last segment of its URLs. Slack writes a lower-case slug there (spaces and
    other characters as `_`), never the name itself: a name such as `../../etc/passwd` written raw
    made the URL point somewhere else (clients resolve `..`), and the file could not be downloaded."""
    slug = _URL_UNSAFE.sub("_", name.lower())
    return slug if slug.strip(".") else "file"


def file_urls(state: SlackState, file: File) -> JSON:
    base = state.base_url
    team = state.workspace.home.id
    name = url_name(file.name)
    return {
        "url_private": f"{base}files-pri/{team}-{file.id}/{name}",
        "url_private_download": f"{base}files-pri/{team}-{file.id}/download/{name}",
        "permalink": f"{base}files/{file.user}/{file.id}/{name}",
    }


def file_json(state: SlackState, file: File) -> JSON:
    user = state.workspace.users.get(file.user)
    data: JSON = {
        "id": file.id,
        "created": file.created,
        "timestamp": file.created,
        "name": file.name,
        "title": file.title,
        "mimetype": file.mimetype,
        "filetype": file.filetype,
        "pretty_type": file.filetype.upper(),
        "user": file.user,
        "user_team": file.team,
        "editable": False,
        "size": len(file.content),
        "mode": "hosted",
        "is_external": False,
        "external_type": "",
        "is_public": bool(file.shares),
        "public_url_shared": False,
        "display_as_bot": False,
        "username": "",
        **file_urls(state, file),
        "has_rich_preview": False,
        "file_access": "visible",
        "shares": {"public": copy.deepcopy(file.shares)} if file.shares else {},
        "channels": sorted(file.shares),
        "groups": [],
        "ims": [],
        "comments_count": 0,
    }
    if user is not None and user.is_bot:
        data["bot_id"] = user.bot_id
    if file.alt_txt:
        data["alt_txt"] = file.alt_txt
    return data


def _icons(message: Message) -> JSON | None:
    if message.icon_url:
        return {"image_48": message.icon_url, "image_72": message.icon_url}
    if message.icon_emoji:
        return {"emoji": message.icon_emoji}
    return None


def message_json(state: SlackState, message: Message, *, include_metadata: bool = False) -> JSON:
    if message.deleted:
        # A deleted parent with replies stays as a tombstone so its thread remains reachable.
        return {
            "type": "message",
            "subtype": "tombstone",
            "text": TOMBSTONE_TEXT,
            "user": "USLACKBOT",
            "hidden": True,
            "ts": message.ts,
            "thread_ts": message.ts,
            "reply_count": len(live_replies(state, message)),
        }
    data: JSON = {"type": "message"}
    if message.subtype:
        data["subtype"] = message.subtype
    data["text"] = message.text
    if message.subtype != "bot_message":
        # A bot message with its own username/icon is a classic bot_message, which has no `user`.
        data["user"] = message.user
    data.update({"ts": message.ts, "team": message.team})
    author = state.workspace.users.get(message.user)
    if author is not None and author.team_id != state.workspace.home.id:
        data["user_team"] = author.team_id
        data["source_team"] = author.team_id
    if message.client_msg_id:
        data["client_msg_id"] = message.client_msg_id
    if message.bot_id:
        data["bot_id"] = message.bot_id
        data["app_id"] = message.app_id
        data["bot_profile"] = bot_profile(state, message.bot_id)
    if message.username:
        data["username"] = message.username
    icons = _icons(message)
    if icons:
        data["icons"] = icons
    if message.blocks is not None:
        data["blocks"] = copy.deepcopy(message.blocks)
    if message.files:
        data["files"] = [file_json(state, state.files[f]) for f in message.files if f in state.files]
        data["upload"] = False
        data["display_as_bot"] = False
    if message.thread_ts is not None:
        data["thread_ts"] = message.thread_ts
        if message.is_reply:
            parent = state.messages.get(message.channel, {}).get(message.thread_ts)
            if parent is not None:
                data["parent_user_id"] = parent.user
        else:
            data.update(thread_summary(state, message))
    if message.reactions:
        data["reactions"] = [
            {"name": name, "users": list(users), "count": len(users)}
            for name, users in message.reactions.items()
        ]
    if message.edited:
        data["edited"] = dict(message.edited)
    if include_metadata and message.metadata is not None:
        data["metadata"] = copy.deepcopy(message.metadata)
    return data


def live_replies(state: SlackState, parent: Message) -> list[Message]:
    stored = state.messages.get(parent.channel, {})
    return [stored[ts] for ts in parent.replies if not stored[ts].deleted]


def thread_summary(state: SlackState, parent: Message) -> JSON:
    replies = live_replies(state, parent)
    users: list[str] = []
    for reply in replies:
        if reply.user not in users:
            users.append(reply.user)
    summary: JSON = {
        "reply_count": len(replies),
        "reply_users_count": len(users),
        "latest_reply": replies[-1].ts if replies else parent.ts,
        "reply_users": users,
        "is_locked": False,
        "subscribed": False,
    }
    return summary


def profile_json(state: SlackState, user: User) -> JSON:
    first, _, last = user.real_name.partition(" ")
    profile: JSON = {
        "title": "",
        "phone": "",
        "skype": "",
        "real_name": user.real_name,
        "real_name_normalized": user.real_name,
        "display_name": user.display_name,
        "display_name_normalized": user.display_name,
        "fields": None,
        "status_text": "",
        "status_emoji": "",
        "status_expiration": 0,
        "avatar_hash": f"g{user.id[-6:].lower()}",
        "first_name": first,
        "last_name": last,
        "team": user.team_id,
    }
    for size in AVATAR_SIZES:
        profile[f"image_{size}"] = avatar_url(user.id, size)
    if user.email and user.email_visible and "users:read.email" in state.workspace.scopes:
        profile["email"] = user.email
    if user.is_bot:
        profile["bot_id"] = user.bot_id
        profile["api_app_id"] = user.app_id
        profile["always_active"] = True
    return profile


def user_json(state: SlackState, user: User) -> JSON:
    return {
        "id": user.id,
        "team_id": user.team_id,
        "name": user.name,
        "deleted": user.deleted,
        "color": "9f69e7",
        "real_name": user.real_name,
        "tz": user.tz,
        "tz_label": "Central European Time",
        "tz_offset": 3600,
        "profile": profile_json(state, user),
        "is_admin": user.is_admin,
        "is_owner": False,
        "is_primary_owner": False,
        "is_restricted": False,
        "is_ultra_restricted": False,
        "is_bot": user.is_bot,
        "is_app_user": False,
        "updated": 1_700_000_000,
        "is_email_confirmed": True,
        "who_can_share_contact_card": "EVERYONE",
    }


def channel_json(state: SlackState, channel: Channel, *, include_num_members: bool = False) -> JSON:
    home = state.workspace.home.id
    data: JSON = {
        "id": channel.id,
        "name": channel.name,
        "is_channel": True,
        "is_group": False,
        "is_im": False,
        "is_mpim": False,
        "is_private": channel.is_private,
        "created": channel.created,
        "is_archived": channel.is_archived,
        "is_general": False,
        "unlinked": 0,
        "name_normalized": channel.name,
        "is_shared": channel.is_ext_shared,
        "is_org_shared": False,
        "is_pending_ext_shared": False,
        "pending_shared": [],
        "context_team_id": home,
        "updated": channel.created * 1000,
        "parent_conversation": None,
        "creator": channel.creator,
        "is_ext_shared": channel.is_ext_shared,
        "shared_team_ids": [home, *channel.shared_team_ids],
        "pending_connected_team_ids": [],
        "is_member": state.workspace.bot_user in channel.members,
        "topic": {"value": channel.topic, "creator": "", "last_set": 0},
        "purpose": {"value": channel.purpose, "creator": "", "last_set": 0},
        "previous_names": [],
    }
    if include_num_members:
        data["num_members"] = len(channel.members)
    return data


def view_json(state: SlackState, view: View) -> JSON:
    body = copy.deepcopy(view.body)
    data: JSON = {
        "id": view.id,
        "team_id": view.team_id,
        "type": view.type,
        "blocks": body.get("blocks", []),
        "private_metadata": body.get("private_metadata", ""),
        "callback_id": body.get("callback_id", ""),
        "state": {"values": {}},
        "hash": view.hash,
        "title": body.get("title"),
        "clear_on_close": bool(body.get("clear_on_close", False)),
        "notify_on_close": bool(body.get("notify_on_close", False)),
        "close": body.get("close"),
        "submit": body.get("submit"),
        "previous_view_id": None,
        "root_view_id": view.root_view_id or view.id,
        "app_id": state.workspace.app_id,
        "external_id": view.external_id or "",
        "app_installed_team_id": state.workspace.home.id,
        "bot_id": state.workspace.bot_id,
    }
    return data


def permalink(state: SlackState, channel: str, message: Message) -> str:
    compact = message.ts.replace(".", "")
    link = f"{state.base_url}archives/{channel}/p{compact}"
    if message.is_reply:
        link += f"?thread_ts={message.thread_ts}&cid={channel}"
    return link


def json_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
