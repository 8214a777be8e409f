"""Slack input as typed objects: an Events API envelope (or a message shortcut payload) parsed once.

The handler works on these, never on raw dicts. Anything we do not act on parses to None:
bot messages (ours above all, recognised by `bot_id`/`app_id`, never by subtype), channel joins
and topic changes, unknown event types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Message subtypes written by a person that carry content (a plain message has no subtype).
CONTENT_SUBTYPES = frozenset({"file_share", "thread_broadcast", "me_message"})


# The emoji staff put on a message to make it a ticket.
TICKET_REACTION = "ticket"


@dataclass(frozen=True)
class PostedMessage:
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None = None
    # The message as Slack sent it: blocks and files are read from here.
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def thread_root(self) -> str:
        return self.thread_ts or self.ts

    @property
    def files(self) -> list[Mapping[str, Any]]:
        return [f for f in self.raw.get("files") or [] if isinstance(f, Mapping)]


@dataclass(frozen=True)
class MessagePosted:
    message: PostedMessage


@dataclass(frozen=True)
class MessageEdited:
    message: PostedMessage
    # When the edit happened (the event's ts), to tell a fresh message from an old one.
    edited_ts: str | None = None
    # The text before the edit, as typed (Slack's `previous_message`).
    previous_text: str = ""
    # Files the message had before the edit and has no more (deleted in Slack: gone from the
    # message, or left as a tombstone), as Slack described them in `previous_message`.
    removed_files: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class MessageDeleted:
    channel: str
    ts: str
    deleted_ts: str | None = None  # when it was deleted (the event's ts)


@dataclass(frozen=True)
class ReactionAdded:
    user: str
    reaction: str
    channel: str
    ts: str


@dataclass(frozen=True)
class MembershipChanged:
    user: str
    channel: str
    joined: bool


@dataclass(frozen=True)
class RemovedFromChannel:
    """The app removed from a channel (`channel_left` / `group_left`), by `actor` when Slack says."""

    channel: str
    actor: str | None


@dataclass(frozen=True)
class HomeOpened:
    user: str


@dataclass(frozen=True)
class TicketShortcut:
    """The "Create ticket" message shortcut: who used it, on which message, where to answer."""

    user: str
    message: PostedMessage
    response_url: str | None


SlackInput = (
    MessagePosted
    | MessageEdited
    | MessageDeleted
    | ReactionAdded
    | MembershipChanged
    | RemovedFromChannel
    | HomeOpened
    | TicketShortcut
)


# Slackbot posts as this user, and some of its posts (custom responses) carry no bot_id.
SLACKBOT_USER = "USLACKBOT"


def is_from_a_bot(message: Mapping[str, Any]) -> bool:
    return bool(
        message.get("bot_id")
        or message.get("app_id")
        or message.get("subtype") == "bot_message"
        or message.get("user") == SLACKBOT_USER
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_message(raw: Mapping[str, Any], channel: str) -> PostedMessage | None:
    """A person's message with content; None for bots, joins, tombstones and the like."""
    if is_from_a_bot(raw):
        return None
    subtype = raw.get("subtype")
    if subtype is not None and subtype not in CONTENT_SUBTYPES:
        return None
    user, ts = _str(raw.get("user")), _str(raw.get("ts"))
    if user is None or ts is None:
        return None
    return PostedMessage(
        channel=channel,
        ts=ts,
        user=user,
        text=str(raw.get("text") or ""),
        thread_ts=_str(raw.get("thread_ts")),
        raw=raw,
    )


def _parse_message_event(event: Mapping[str, Any]) -> SlackInput | None:
    channel = _str(event.get("channel"))
    if channel is None:
        return None
    subtype = event.get("subtype")
    when = _str(event.get("event_ts")) or _str(event.get("ts"))
    if subtype == "message_deleted":
        ts = _str(event.get("deleted_ts")) or _str((event.get("previous_message") or {}).get("ts"))
        return MessageDeleted(channel, ts, when) if ts else None
    if subtype == "message_changed":
        inner = event.get("message")
        if not isinstance(inner, Mapping):
            return None
        if inner.get("subtype") == "tombstone":
            # A thread's parent deleted while it has replies: Slack keeps a tombstone.
            ts = _str(inner.get("ts"))
            return MessageDeleted(channel, ts, when) if ts else None
        message = parse_message(inner, channel)
        previous = event.get("previous_message")
        before = _str(previous.get("text")) if isinstance(previous, Mapping) else None
        removed = _removed_files(previous, inner)
        return MessageEdited(message, when, before or "", removed) if message else None
    message = parse_message(event, channel)
    return MessagePosted(message) if message else None


def _parse_event(event: Mapping[str, Any]) -> SlackInput | None:
    kind = event.get("type")
    if kind == "message":
        return _parse_message_event(event)
    if kind in ("channel_left", "group_left"):
        channel = _str(event.get("channel"))
        return RemovedFromChannel(channel, _str(event.get("actor_id"))) if channel else None
    user = _str(event.get("user"))
    if user is None:
        return None
    if kind == "reaction_added":
        item = event.get("item") or {}
        channel, ts = _str(item.get("channel")), _str(item.get("ts"))
        if item.get("type") != "message" or channel is None or ts is None:
            return None
        return ReactionAdded(user, str(event.get("reaction") or ""), channel, ts)
    if kind in ("member_joined_channel", "member_left_channel"):
        channel = _str(event.get("channel"))
        return MembershipChanged(user, channel, kind == "member_joined_channel") if channel else None
    if kind == "app_home_opened":
        return HomeOpened(user) if event.get("tab", "home") == "home" else None
    return None


def _parse_shortcut(payload: Mapping[str, Any]) -> SlackInput | None:
    user = _str((payload.get("user") or {}).get("id"))
    channel = _str((payload.get("channel") or {}).get("id"))
    raw = payload.get("message")
    if user is None or channel is None or not isinstance(raw, Mapping):
        return None
    ts = _str(raw.get("ts")) or _str(payload.get("message_ts"))
    author = _str(raw.get("user"))
    if ts is None:
        return None
    # Bot messages are kept here (with an empty author) so the person gets a clear refusal.
    message = PostedMessage(
        channel=channel,
        ts=ts,
        user="" if is_from_a_bot(raw) or author is None else author,
        text=str(raw.get("text") or ""),
        thread_ts=_str(raw.get("thread_ts")),
        raw=raw,
    )
    return TicketShortcut(user, message, _str(payload.get("response_url")))


def parse_payload(payload: Mapping[str, Any]) -> SlackInput | None:
    """An Events API envelope (`event_callback`) or a `message_action` payload."""
    if payload.get("type") == "message_action":
        return _parse_shortcut(payload)
    event = payload.get("event")
    return _parse_event(event) if isinstance(event, Mapping) else None


def home_team_of(payload: Mapping[str, Any]) -> str | None:
    """The team the app is installed in (not the sender's, which differs over Slack Connect)."""
    for authorization in payload.get("authorizations") or []:
        if isinstance(authorization, Mapping) and _str(authorization.get("team_id")):
            return str(authorization["team_id"])
    return _str(payload.get("context_team_id")) or _str(payload.get("team_id"))


_GONE_MODES = frozenset({"tombstone", "hidden_by_limit"})


def _removed_files(previous: Any, current: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The files of `previous` that `current` no longer has, or has only as a tombstone."""
    if not isinstance(previous, Mapping):
        return ()

    def files(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return [f for f in message.get("files") or [] if isinstance(f, Mapping) and f.get("id")]

    live = {
        str(f["id"])
        for f in files(current)
        if f.get("mode") not in _GONE_MODES and f.get("file_access") != "file_not_found"
    }
    return tuple(f for f in files(previous) if str(f["id"]) not in live)
