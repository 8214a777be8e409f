"""Slack's Socket Mode, served as a plain WebSocket endpoint.

Protocol (api.slack.com/apis/socket-mode): the app calls apps.connections.open with its `xapp-` token
and connects to the returned URL; Slack sends `{"type": "hello", ...}`, then envelopes
`{"envelope_id", "type": "events_api" | "slash_commands" | "interactive", "payload",
"accepts_response_payload", "retry_attempt", "retry_reason"}`; the app acks each with
`{"envelope_id", "payload"?}`. `{"type": "disconnect", "reason": ...}` asks the app to reconnect.
Envelopes go round-robin over the open connections, as Slack spreads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from sandbox.state import JSON, SlackState

log = logging.getLogger(__name__)


@dataclass
class Ack:
    envelope_id: str
    payload: JSON | None
    time: float = field(default_factory=time.monotonic)


@dataclass
class SocketConnection:
    id: int
    ws: web.WebSocketResponse
    opened: float = field(default_factory=time.monotonic)


class SocketModeHub:
    def __init__(self, state: SlackState) -> None:
        self.state = state
        self.connections: list[SocketConnection] = []
        self.acks: list[Ack] = []
        self.sent: list[JSON] = []  # every message sent to a client, hello and disconnect included
        self._waiting: dict[str, asyncio.Future[JSON | None]] = {}
        self._ids = itertools.count(1)
        self._next = 0

    @property
    def connected(self) -> int:
        return len(self.connections)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self.state.lock:
            used = self.state.socket_tickets.get(ticket)
            if used is None or used:
                # Slack refuses an unknown or reused ticket before the WebSocket upgrade.
                return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
            self.state.socket_tickets[ticket] = True
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        connection = SocketConnection(next(self._ids), ws)
        hello = {
            "type": "hello",
            "num_connections": len(self.connections) + 1,
            "debug_info": {
                "host": "sandbox-applink",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.state.workspace.app_id},
        }
        await self._send(ws, hello)
        self.connections.append(connection)
        self.state.changed()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._receive(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            if connection in self.connections:
                self.connections.remove(connection)
            self.state.changed()
        return ws

    async def _send(self, ws: web.WebSocketResponse, message: JSON) -> None:
        self.sent.append(message)
        await ws.send_str(json.dumps(message))

    def _receive(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("socket mode client sent something that is not JSON: %.80s", raw)
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if not envelope_id:
            return
        payload = message.get("payload")
        self.acks.append(Ack(envelope_id, payload if isinstance(payload, dict) else None))
        waiter = self._waiting.pop(envelope_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(payload if isinstance(payload, dict) else {})
        self.state.changed()

    async def send(
        self,
        envelope_type: str,
        payload: JSON,
        *,
        accepts_response_payload: bool,
        ack_timeout: float,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> tuple[bool, JSON | None]:
        """Send one envelope and wait for its ack: (acked, ack payload)."""
        if not self.connections:
            return False, None
        connection = self.connections[self._next % len(self.connections)]
        self._next += 1
        envelope_id = str(uuid.uuid4())
        message: JSON = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if envelope_type == "events_api":
            message["retry_attempt"] = retry_attempt
            message["retry_reason"] = retry_reason
        waiter: asyncio.Future[JSON | None] = asyncio.get_running_loop().create_future()
        self._waiting[envelope_id] = waiter
        try:
            await self._send(connection.ws, message)
            ack = await asyncio.wait_for(waiter, ack_timeout)
        except (TimeoutError, ConnectionError, RuntimeError):
            return False, None
        finally:
            self._waiting.pop(envelope_id, None)
        return True, ack

    async def disconnect(self, reason: str = "refresh_requested", close_after: float = 1.0) -> None:
        """Ask every client to reconnect; close the old sockets after a grace period, as Slack does."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox-applink"}}
        old = list(self.connections)
        for connection in old:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(connection.ws, message)
        await asyncio.sleep(close_after)
        for connection in old:
            await connection.ws.close()

    async def close_all(self) -> None:
        for connection in list(self.connections):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await connection.ws.close()
        self.connections.clear()

    def acks_for(self, envelope_id: str) -> list[Any]:
        return [a for a in self.acks if a.envelope_id == envelope_id]
