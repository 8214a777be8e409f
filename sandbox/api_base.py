"""The frame every emulated Web API method runs in: parameters, errors, and the method registry."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.state import JSON, Message, SlackState
from sandbox.workspace import Channel, User

TS_PATTERN = re.compile(r"^\d{1,12}\.\d{1,6}$")


class SlackError(Exception):
    """An `{"ok": false, "error": ...}` answer (HTTP 200, as Slack answers)."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra

    def body(self) -> JSON:
        return {"ok": False, "error": self.error, **self.extra}


@dataclass
class Call:
    method: str
    state: SlackState
    params: JSON
    token: str | None

    # -- parameters, as Slack reads them from a form, a query string or a JSON body --------------
    def get(self, name: str, *, required: bool = False) -> str | None:
        value = self.params.get(name)
        if value is None or value == "":
            if required:
                raise SlackError(
                    "invalid_arguments", response_metadata={"messages": [f"[ERROR] missing {name}"]}
                )
            return None
        return value if isinstance(value, str) else str(value)

    def require(self, name: str, error: str | None = None) -> str:
        value = self.get(name)
        if value is None:
            if error:
                raise SlackError(error)
            return self.get(name, required=True) or ""
        return value

    def flag(self, name: str) -> bool:
        value = self.params.get(name)
        if isinstance(value, bool):
            return value
        return str(value).lower() in ("1", "true", "yes") if value is not None else False

    def number(self, name: str, default: int) -> int:
        value = self.params.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None

    def structured(self, name: str, error: str = "invalid_arguments") -> Any:
        """A structured parameter: a JSON string in forms and query strings, a value in JSON bodies."""
        value = self.params.get(name)
        if isinstance(value, str):
            if value == "":
                return None
            try:
                return json.loads(value)
            except ValueError:
                raise SlackError(error) from None
        return value

    # -- lookups -------------------------------------------------------------------------------
    def channel(self, name: str = "channel", *, need_member: bool = False) -> Channel:
        return self.channel_ref(self.get(name), need_member=need_member)

    def channel_ref(self, ref: str | None, *, need_member: bool = False) -> Channel:
        ws = self.state.workspace
        if ref is None:
            raise SlackError("channel_not_found")
        # Slack accepts a channel ID, or a name with or without '#'.
        channel = ws.channels.get(ref) or ws.channel_by_name(ref)
        if channel is None:
            raise SlackError("channel_not_found")
        is_member = ws.bot_user in channel.members
        if channel.is_private and not is_member:
            # Slack hides private channels the bot is not in: they do not exist for it.
            raise SlackError("channel_not_found")
        if need_member and not is_member:
            raise SlackError("not_in_channel")
        return channel

    def user(self, name: str = "user") -> User:
        ref = self.get(name)
        user = self.state.workspace.users.get(ref or "")
        if user is None:
            raise SlackError("user_not_found")
        return user

    def message(self, channel: Channel, name: str = "ts") -> Message:
        ts = self.get(name)
        message = self.state.find_message(channel.id, ts or "")
        if message is None or message.deleted:
            raise SlackError("message_not_found")
        return message


Handler = Callable[[Call], JSON]


@dataclass
class MethodSpec:
    name: str
    handler: Handler
    token_type: str  # "bot" or "app"
    scope: str | None


METHODS: dict[str, MethodSpec] = {}


def method(name: str, *, scope: str | None = None, token_type: str = "bot") -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        METHODS[name] = MethodSpec(name, handler, token_type, scope)
        return handler

    return register


def paginate(
    items: list[Any], call: Call, default_limit: int, max_limit: int = 1000
) -> tuple[list[Any], str]:
    """Slack's cursor pagination: an opaque base64 cursor, an empty next_cursor on the last page."""
    limit = call.number("limit", default_limit)
    limit = default_limit if limit <= 0 else min(limit, max_limit)
    cursor = call.get("cursor")
    start = 0
    if cursor:
        try:
            kind, _, offset = base64.b64decode(cursor.encode()).decode().partition(":")
            start = int(offset)
            if kind != "offset" or start < 0:
                raise ValueError(cursor)
        except ValueError:
            raise SlackError("invalid_cursor") from None
    page = items[start : start + limit]
    end = start + limit
    next_cursor = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
    return page, next_cursor
