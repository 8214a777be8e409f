"""What the emulated Slack remembers: messages, files, views, and every call and delivery it saw.

One re-entrant lock guards it all: the web handlers run on the emulator's event loop thread while
tests read state and make users act from their own thread. `changed()` wakes anyone in `wait_for`.
"""

from __future__ import annotations

import itertools
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.workspace import Workspace

JSON = dict[str, Any]

_ID_ALPHABET = string.ascii_uppercase + string.digits


def random_id(prefix: str, length: int = 10) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    team: str
    text: str = ""
    blocks: list[JSON] | None = None
    thread_ts: str | None = None  # set on replies, and on a parent once it has replies
    subtype: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    username: str | None = None
    icon_url: str | None = None
    icon_emoji: str | None = None
    metadata: JSON | None = None
    files: list[str] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)
    edited: JSON | None = None
    deleted: bool = False
    reply_broadcast: bool = False
    # A reply whose thread_ts named no message: Slack answers ok and the message shows nowhere.
    orphan: bool = False
    replies: list[str] = field(default_factory=list)
    client_msg_id: str | None = None
    previous_texts: list[str] = field(default_factory=list)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def visible(self) -> bool:
        return not self.orphan


@dataclass
class File:
    id: str
    name: str
    title: str
    mimetype: str
    user: str
    team: str
    created: int
    content: bytes = b""
    uploaded: bool = False
    completed: bool = False
    alt_txt: str | None = None
    length: int | None = None
    upload_key: str = ""
    deleted: bool = False  # files.delete: gone from every message that shared it
    # channel -> message ts list, as in `shares.public`
    shares: dict[str, list[JSON]] = field(default_factory=dict)

    @property
    def filetype(self) -> str:
        return self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "binary"


@dataclass
class View:
    id: str
    team_id: str
    type: str
    body: JSON
    user: str
    hash: str
    trigger_id: str | None = None
    external_id: str | None = None
    root_view_id: str | None = None
    closed: bool = False


@dataclass
class CallRecord:
    """One Web API request as the emulator saw it."""

    method: str
    params: JSON
    status: int
    ok: bool
    error: str | None
    time: float  # time.monotonic() when the request arrived
    channel: str | None
    token: str | None = None
    # The client's end of the connection the request came over ("127.0.0.1:53211"): calls that
    # share it came over one kept-alive connection.
    peer: str | None = None


@dataclass
class Ephemeral:
    channel: str
    user: str
    text: str
    blocks: list[JSON] | None
    ts: str
    thread_ts: str | None = None
    source: str = "chat.postEphemeral"


@dataclass
class ResponseUrlPost:
    """A POST the app made to a response_url (slash command or interaction)."""

    response_url: str
    body: JSON
    channel: str | None
    user: str | None
    source: str = "response_url"  # or "ack": the app's direct answer to a slash command


class SlackState:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self.base_url = "http://127.0.0.1:0/"
        self.messages: dict[str, dict[str, Message]] = {}
        self.files: dict[str, File] = {}
        self.uploads: dict[str, str] = {}  # upload key -> file id
        self.views: dict[str, View] = {}
        self.home_views: dict[str, str] = {}  # user -> view id
        self.triggers: dict[str, bool] = {}  # trigger_id -> already exchanged
        self.ephemerals: list[Ephemeral] = []
        self.response_posts: list[ResponseUrlPost] = []
        self.response_urls: dict[str, JSON] = {}  # id -> {channel, user, message_ts}
        self.calls: list[CallRecord] = []
        self._last_us = 0
        self._event_counter = itertools.count(1)
        self.version = 0
        self.socket_tickets: dict[str, bool] = {}  # apps.connections.open ticket -> used
        # Set by the emulator: called with each Events API `event` Slack would send to the app, and
        # the channel it happened in (None for events without one).
        self.emit: Callable[[JSON, str | None], None] = lambda event, channel: None

    # -- clocks and ids -------------------------------------------------------------------------
    def next_ts(self) -> str:
        """Slack's message ts: seconds.microseconds, six digits after the dot, strictly increasing."""
        with self.lock:
            now_us = int(time.time() * 1_000_000)
            self._last_us = max(now_us, self._last_us + 1)
            us = self._last_us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def next_event_id(self) -> str:
        return f"Ev{next(self._event_counter):04d}{random_id('', 6)}"

    def new_trigger_id(self) -> str:
        trigger_id = f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        with self.lock:
            self.triggers[trigger_id] = False
        return trigger_id

    # -- change notification -------------------------------------------------------------------
    def changed(self) -> None:
        with self._changed:
            self.version += 1
            self._changed.notify_all()

    def wait_changed(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    # -- messages ------------------------------------------------------------------------------
    def channel_messages(self, channel: str) -> dict[str, Message]:
        return self.messages.setdefault(channel, {})

    def find_message(self, channel: str, ts: str) -> Message | None:
        message = self.messages.get(channel, {}).get(ts)
        return message if message is not None and message.visible else None

    def add_message(self, message: Message) -> Message:
        with self.lock:
            stored = self.channel_messages(message.channel)
            stored[message.ts] = message
            if message.thread_ts is not None and message.thread_ts != message.ts:
                parent = stored.get(message.thread_ts)
                if parent is None or parent.is_reply:
                    message.orphan = True
                else:
                    parent.thread_ts = parent.ts
                    parent.replies.append(message.ts)
        self.changed()
        return message

    def top_level(self, channel: str) -> list[Message]:
        return [
            m
            for m in self.messages.get(channel, {}).values()
            if m.visible and (not m.is_reply or m.reply_broadcast) and not (m.deleted and not m.replies)
        ]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        stored = self.messages.get(channel, {})
        parent = stored.get(thread_ts)
        if parent is None or not parent.visible:
            return []
        replies = [stored[ts] for ts in parent.replies if not stored[ts].deleted]
        return [parent, *replies]

    def record_call(self, record: CallRecord) -> None:
        with self.lock:
            self.calls.append(record)
        self.changed()
