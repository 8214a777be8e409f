"""conversations.*, users.*, auth.test and apps.connections.open."""

from __future__ import annotations

import secrets

from sandbox.api_base import Call, SlackError, method, paginate
from sandbox.events import member_event
from sandbox.render import channel_json, message_json, user_json
from sandbox.state import JSON, Message


@method("auth.test")
def auth_test(call: Call) -> JSON:
    ws = call.state.workspace
    bot = ws.users[ws.bot_user]
    return {
        "ok": True,
        "url": f"https://{ws.home.domain}.slack.com/",
        "team": ws.home.name,
        "user": bot.name,
        "team_id": ws.home.id,
        "user_id": ws.bot_user,
        "bot_id": ws.bot_id,
        "is_enterprise_install": False,
    }


@method("apps.connections.open", token_type="app")
def apps_connections_open(call: Call) -> JSON:
    state = call.state
    ticket = secrets.token_hex(16)
    with state.lock:
        state.socket_tickets[ticket] = False
    ws_base = state.base_url.replace("http://", "ws://", 1)
    return {"ok": True, "url": f"{ws_base}socket-mode/link/?ticket={ticket}&app_id={state.workspace.app_id}"}


@method("conversations.info", scope="channels:read")
def conversations_info(call: Call) -> JSON:
    channel = call.channel()
    return {
        "ok": True,
        "channel": channel_json(call.state, channel, include_num_members=call.flag("include_num_members")),
    }


@method("conversations.members", scope="channels:read")
def conversations_members(call: Call) -> JSON:
    channel = call.channel()
    page, next_cursor = paginate(list(channel.members), call, default_limit=100)
    return {"ok": True, "members": page, "response_metadata": {"next_cursor": next_cursor}}


@method("conversations.join", scope="channels:join")
def conversations_join(call: Call) -> JSON:
    state = call.state
    channel = call.channel()
    if channel.is_private:
        raise SlackError("method_not_supported_for_channel_type")
    if channel.is_archived:
        raise SlackError("is_archived")
    bot = state.workspace.bot_user
    answer: JSON = {"ok": True}
    if bot in channel.members:
        answer["warning"] = "already_in_channel"
        answer["response_metadata"] = {"warnings": ["already_in_channel"]}
    else:
        channel.members.append(bot)
        state.changed()
        state.emit(member_event(state, "member_joined_channel", bot, channel), channel.id)
    answer["channel"] = channel_json(state, channel)
    return answer


def _in_window(messages: list[Message], call: Call) -> list[Message]:
    """Apply oldest/latest (exclusive unless `inclusive`), as conversations.history/replies do."""
    oldest = call.get("oldest")
    latest = call.get("latest")
    inclusive = call.flag("inclusive")

    def keep(message: Message) -> bool:
        ts = float(message.ts)
        if oldest is not None and (ts < float(oldest) or (ts == float(oldest) and not inclusive)):
            return False
        return not (latest is not None and (ts > float(latest) or (ts == float(latest) and not inclusive)))

    try:
        return [m for m in messages if keep(m)]
    except ValueError:
        raise SlackError("invalid_ts_oldest" if oldest else "invalid_ts_latest") from None


@method("conversations.history", scope="channels:history")
def conversations_history(call: Call) -> JSON:
    state = call.state
    channel = call.channel(need_member=True)
    with_metadata = call.flag("include_all_metadata")
    newest_first = sorted(state.top_level(channel.id), key=lambda m: float(m.ts), reverse=True)
    page, next_cursor = paginate(_in_window(newest_first, call), call, default_limit=100, max_limit=999)
    answer: JSON = {
        "ok": True,
        "messages": [message_json(state, m, include_metadata=with_metadata) for m in page],
        "has_more": bool(next_cursor),
        "pin_count": 0,
        "channel_actions_ts": None,
        "channel_actions_count": 0,
    }
    if next_cursor:
        answer["response_metadata"] = {"next_cursor": next_cursor}
    return answer


@method("conversations.replies", scope="channels:history")
def conversations_replies(call: Call) -> JSON:
    state = call.state
    channel = call.channel(need_member=True)
    ts = call.require("ts", "thread_not_found")
    stored = state.messages.get(channel.id, {}).get(ts)
    if stored is None or not stored.visible or (stored.deleted and not stored.replies):
        raise SlackError("thread_not_found")
    # Asked for a reply's ts, Slack answers with that reply alone.
    thread = [stored] if stored.is_reply else state.thread(channel.id, ts)
    with_metadata = call.flag("include_all_metadata")
    page, next_cursor = paginate(_in_window(thread, call), call, default_limit=1000)
    answer: JSON = {
        "ok": True,
        "messages": [message_json(state, m, include_metadata=with_metadata) for m in page],
        "has_more": bool(next_cursor),
    }
    if next_cursor:
        answer["response_metadata"] = {"next_cursor": next_cursor}
    return answer


@method("users.info", scope="users:read")
def users_info(call: Call) -> JSON:
    return {"ok": True, "user": user_json(call.state, call.user())}


@method("users.lookupByEmail", scope="users:read.email")
def users_lookup_by_email(call: Call) -> JSON:
    email = (call.get("email") or "").lower()
    for user in call.state.workspace.users.values():
        if user.email and user.email_visible and user.email.lower() == email:
            return {"ok": True, "user": user_json(call.state, user)}
    raise SlackError("users_not_found")
