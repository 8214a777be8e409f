"""Socket Mode: a real Bolt AsyncApp connects through apps.connections.open and acks envelopes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.websockets import AsyncSocketModeHandler as WebsocketsSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk import WebClient
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.sender import RetryPolicy
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import ALICE, APP_TOKEN, BOT_TOKEN, CONNECT, DAN, SIGNING_SECRET, TRIAGE


def test_connections_open_returns_a_socket_url(emulator: SlackEmulator) -> None:
    client = WebClient(base_url=emulator.api_url, retry_handlers=[])
    url = client.apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith(f"ws://127.0.0.1:{emulator.port}/socket-mode/link/?ticket=")


def make_app(emulator: SlackEmulator, seen: list[Any]) -> AsyncApp:
    app = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=emulator.api_url), signing_secret=SIGNING_SECRET
    )

    @app.event("message")
    async def on_message(event: dict) -> None:
        seen.append(event)

    @app.command("/desk")
    async def desk(ack: Any, command: dict) -> None:
        await ack(f"done: {command['text']}")

    return app


@pytest.mark.parametrize(
    "handler_class", [AsyncSocketModeHandler, WebsocketsSocketModeHandler], ids=["aiohttp", "websockets"]
)
def test_bolt_receives_events_and_commands(handler_class: type) -> None:
    seen: list[Any] = []

    async def main(emulator: SlackEmulator) -> None:
        handler = handler_class(make_app(emulator, seen), APP_TOKEN)
        await handler.connect_async()
        try:
            await emulator.wait_for_socket_async()
            emulator.user_post(DAN, CONNECT, "over the socket")
            await emulator.wait_idle_async()
            interaction = await emulator.user_command(ALICE, TRIAGE, "/desk", "close 1").wait_async()
            assert interaction.ack_payload == {"text": "done: close 1"}
        finally:
            await handler.close_async()

    async def run() -> None:
        async with SlackEmulator() as emulator:
            await main(emulator)
            hello = emulator.hub.sent[0]
            assert hello["type"] == "hello" and hello["connection_info"]["app_id"] == "A0OURS"
            envelope = emulator.hub.sent[1]
            assert envelope["type"] == "events_api" and envelope["accepts_response_payload"] is False
            assert envelope["payload"]["event"]["text"] == "over the socket"
            assert emulator.hub.sent[2]["type"] == "slash_commands"
            assert [a.envelope_id for a in emulator.socket_acks][:1] == [envelope["envelope_id"]]
            assert emulator.deliveries[0].via == "socket_mode" and emulator.deliveries[0].ok

    asyncio.run(run())
    assert [e["text"] for e in seen] == ["over the socket"]


def test_disconnect_makes_the_client_reconnect() -> None:
    seen: list[Any] = []

    async def run() -> None:
        async with SlackEmulator() as emulator:
            handler = AsyncSocketModeHandler(make_app(emulator, seen), APP_TOKEN)
            await handler.connect_async()
            try:
                await emulator.wait_for_socket_async()
                await emulator.hub.disconnect("refresh_requested", close_after=0.2)
                await emulator.wait_for_async(lambda: len(emulator.calls_to("apps.connections.open")) == 2)
                await emulator.wait_for_socket_async()
                emulator.user_post(DAN, CONNECT, "after reconnect")
                await emulator.wait_idle_async()
            finally:
                await handler.close_async()

    asyncio.run(run())
    assert [e["text"] for e in seen] == ["after reconnect"]


def test_an_unacked_envelope_is_retried() -> None:
    async def run() -> None:
        emulator = SlackEmulator(retry=RetryPolicy(delays=(0.0, 0.0, 0.0)), ack_timeout=0.2)
        async with emulator:
            url = (
                await AsyncWebClient(base_url=emulator.api_url).apps_connections_open(app_token=APP_TOKEN)
            )["url"]
            import aiohttp

            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                assert (await ws.receive_json())["type"] == "hello"
                emulator.user_post(DAN, CONNECT, "ack me")
                first = await ws.receive_json()
                second = await ws.receive_json()
                assert (first["retry_attempt"], second["retry_attempt"]) == (0, 1)
                assert second["retry_reason"] == "timeout"
                assert first["payload"]["event_id"] == second["payload"]["event_id"]
                await ws.send_json({"envelope_id": second["envelope_id"]})
                await emulator.wait_idle_async()
            [delivery] = emulator.deliveries
            assert [a.error for a in delivery.attempts] == ["timeout", None]

    asyncio.run(run())
