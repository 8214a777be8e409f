"""Where the emulator's events, commands and interactions go: Socket Mode clients or an HTTP URL.

Like Slack, delivery is asynchronous and only subscribed events are sent, and message and reaction
events only for channels the bot is a member of. With a Socket Mode client connected everything goes
over the socket (as for an app with Socket Mode on); otherwise to the URL given to
`deliver_events_to`; with neither, events are only recorded in `events`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sandbox.events import envelope
from sandbox.sender import Attempt, Delivery, RequestSender, RetryPolicy
from sandbox.socket_mode import SocketModeHub
from sandbox.state import JSON, SlackState
from sandbox.workspace import Channel

# The design's bot event subscriptions (app.manifest.yml).
DEFAULT_SUBSCRIPTIONS = frozenset(
    {
        "message.channels",
        "message.groups",
        "reaction_added",
        "member_joined_channel",
        "member_left_channel",
        "channel_left",
        "group_left",
        "app_home_opened",
    }
)

Schedule = Callable[[Coroutine[Any, Any, Any]], None]


@dataclass
class Interaction:
    """A slash command, shortcut, block action or view submission a user made, and the app's answer."""

    kind: str  # command, shortcut, block_action, view_submission
    payload: JSON
    trigger_id: str
    response_url: str | None
    channel: str | None = None
    user: str | None = None
    message_ts: str | None = None
    view_id: str | None = None
    delivery: Delivery | None = None
    ack_payload: JSON | None = None  # what the app answered (socket ack payload or HTTP body)
    answered: threading.Event = field(default_factory=threading.Event)

    @property
    def acked(self) -> bool:
        return self.delivery is not None and self.delivery.ok

    def wait(self, timeout: float = 5.0) -> Interaction:
        if not self.answered.wait(timeout):
            raise TimeoutError(f"the app did not answer the {self.kind} within {timeout} s")
        return self

    async def wait_async(self, timeout: float = 5.0) -> Interaction:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.answered.is_set():
            if loop.time() > deadline:
                raise TimeoutError(f"the app did not answer the {self.kind} within {timeout} s")
            await asyncio.sleep(0.01)
        return self


def subscription_for(event: JSON, channel: Channel | None) -> str:
    if event.get("type") == "message":
        return "message.groups" if channel is not None and channel.is_private else "message.channels"
    return str(event.get("type"))


def http_answer_payload(delivery: Delivery) -> JSON | None:
    body = delivery.response_body
    if not delivery.ok or not body:
        return None
    parsed = delivery.response_json()
    return parsed if isinstance(parsed, dict) else {"text": body}


class Dispatcher:
    def __init__(self, state: SlackState, hub: SocketModeHub, schedule: Schedule) -> None:
        self.state = state
        self.hub = hub
        self.schedule = schedule
        self.subscriptions: set[str] = set(DEFAULT_SUBSCRIPTIONS)
        self.sender: RequestSender | None = None
        self.commands_url: str | None = None
        self.interactivity_url: str | None = None
        self.retry = RetryPolicy()
        self.ack_timeout = 3.0
        self.events: list[JSON] = []  # every envelope the app was due, delivered or not
        self.deliveries: list[Delivery] = []
        self.interactions: list[Interaction] = []
        self.pending = 0
        self._lock = threading.Lock()
        self.on_answer: Callable[[Interaction], None] = lambda interaction: None

    # -- targets -------------------------------------------------------------------------------
    def deliver_to(self, url: str | None, signing_secret: str, retry: RetryPolicy | None = None) -> None:
        if retry is not None:
            self.retry = retry
        self.sender = None if url is None else self._sender(url, signing_secret)

    def _sender(self, url: str, signing_secret: str) -> RequestSender:
        return RequestSender(
            url,
            signing_secret,
            retry=self.retry,
            on_change=lambda delivery: self.state.changed(),
            on_start=self._track,
        )

    def _via(self) -> str | None:
        if self.hub.connected:
            return "socket_mode"
        if self.sender is not None:
            return "http"
        return None

    def _start(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        with self._lock:
            self.pending += 1
        self.schedule(self._finish(coroutine))

    async def _finish(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        try:
            await coroutine
        finally:
            with self._lock:
                self.pending -= 1
            self.state.changed()

    # -- events --------------------------------------------------------------------------------
    def wants(self, event: JSON, channel_id: str | None) -> bool:
        channel = self.state.workspace.channels.get(channel_id or "")
        if subscription_for(event, channel) not in self.subscriptions:
            return False
        return channel is None or self.state.workspace.bot_user in channel.members

    def emit(self, event: JSON, channel_id: str | None) -> JSON | None:
        """Build the envelope for an event Slack would send and start delivering it."""
        if not self.wants(event, channel_id):
            return None
        outer = envelope(self.state, event, channel_id)
        with self._lock:
            self.events.append(outer)
        self.state.changed()
        if self._via() is not None:
            self._start(self._deliver_event(outer))
        return outer

    def redeliver(self, outer: JSON) -> None:
        if self._via() is None:
            raise RuntimeError("no app to deliver to: connect Socket Mode or call deliver_events_to")
        self._start(self._deliver_event(outer))

    async def _deliver_event(self, outer: JSON) -> None:
        if self._via() == "http" and self.sender is not None:
            await self.sender.send_event(outer)
            return
        delivery = Delivery("event", "socket-mode", outer, event_id=outer["event_id"], via="socket_mode")
        self._track(delivery)
        reason = ""
        for retry_num in range(len(self.retry.delays) + 1):
            if retry_num:
                await asyncio.sleep(self.retry.delays[retry_num - 1])
            started = asyncio.get_running_loop().time()
            acked, _ = await self.hub.send(
                "events_api",
                outer,
                accepts_response_payload=False,
                ack_timeout=self.ack_timeout,
                retry_attempt=retry_num,
                retry_reason=reason,
            )
            latency = asyncio.get_running_loop().time() - started
            delivery.attempts.append(
                Attempt(
                    retry_num,
                    reason or None,
                    200 if acked else None,
                    "",
                    {},
                    latency,
                    None if acked else "timeout",
                )
            )
            self.state.changed()
            if acked:
                break
            reason = "timeout"
        delivery.done = True

    def _track(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)
        self.state.changed()

    # -- commands and interactivity ------------------------------------------------------------
    def interact(self, interaction: Interaction) -> Interaction:
        with self._lock:
            self.interactions.append(interaction)
        if self._via() is None:
            interaction.answered.set()
            return interaction
        self._start(self._deliver_interaction(interaction))
        return interaction

    async def _deliver_interaction(self, interaction: Interaction) -> None:
        try:
            if self._via() == "http" and self.sender is not None:
                secret = self.sender.signing_secret
                if interaction.kind == "command":
                    sender = self._sender(self.commands_url or self.sender.url, secret)
                    delivery = await sender.send_command(interaction.payload)
                else:
                    sender = self._sender(self.interactivity_url or self.sender.url, secret)
                    delivery = await sender.send_interaction(interaction.payload)
                interaction.delivery = delivery
                interaction.ack_payload = http_answer_payload(delivery)
            else:
                envelope_type = "slash_commands" if interaction.kind == "command" else "interactive"
                delivery = Delivery(interaction.kind, "socket-mode", interaction.payload, via="socket_mode")
                self._track(delivery)
                started = asyncio.get_running_loop().time()
                acked, ack = await self.hub.send(
                    envelope_type,
                    interaction.payload,
                    accepts_response_payload=True,
                    ack_timeout=self.ack_timeout,
                )
                latency = asyncio.get_running_loop().time() - started
                body = "" if not ack else json.dumps(ack)
                delivery.attempts.append(
                    Attempt(0, None, 200 if acked else None, body, {}, latency, None if acked else "timeout")
                )
                delivery.done = True
                interaction.delivery = delivery
                interaction.ack_payload = ack or None
            self.on_answer(interaction)
        finally:
            interaction.answered.set()
            self.state.changed()
