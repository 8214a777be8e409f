"""Events, commands and interactivity delivered over HTTP to a real Bolt AsyncApp (served by aiohttp)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.sender import RetryPolicy
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import ALICE, BOT_TOKEN, CAROL, CONNECT, DAN, HELP, SIGNING_SECRET, TRIAGE

Scenario = Callable[[SlackEmulator, AsyncApp, list[Any]], Awaitable[None]]


async def serve(app: AsyncApp) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app.web_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"


def run_with_bolt(emulator: SlackEmulator, scenario: Scenario, secret: str = SIGNING_SECRET) -> list[Any]:
    seen: list[Any] = []

    async def main() -> None:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=emulator.api_url)
        app = AsyncApp(client=client, signing_secret=SIGNING_SECRET)
        runner, url = await serve(app)
        emulator.deliver_events_to(url, secret, retry=RetryPolicy.fast(timeout=2.0))
        try:
            await scenario(emulator, app, seen)
        finally:
            await runner.cleanup()

    asyncio.run(main())
    return seen


def test_bolt_receives_a_signed_event_and_acks() -> None:
    async def scenario(emulator: SlackEmulator, app: AsyncApp, seen: list[Any]) -> None:
        @app.event("message")
        async def on_message(event: dict, body: dict) -> None:
            seen.append(body)

        emulator.user_post(DAN, CONNECT, "help please")
        await emulator.wait_idle_async()

    with SlackEmulator() as emulator:
        seen = run_with_bolt(emulator, scenario)
        assert [b["event"]["text"] for b in seen] == ["help please"]
        assert seen[0]["is_ext_shared_channel"] is True
        [delivery] = emulator.deliveries
        assert delivery.ok and delivery.status == 200 and len(delivery.attempts) == 1


def test_bolt_ignores_the_bots_own_message_events() -> None:
    async def scenario(emulator: SlackEmulator, app: AsyncApp, seen: list[Any]) -> None:
        @app.event("message")
        async def on_message(event: dict) -> None:
            seen.append(event)

        await app.client.chat_postMessage(channel=TRIAGE, text="Ticket #1")
        await emulator.wait_idle_async()

    with SlackEmulator() as emulator:
        assert run_with_bolt(emulator, scenario) == []
        assert emulator.deliveries[0].ok  # delivered and acked; Bolt dropped it as its own


def test_wrong_signing_secret_is_refused_and_retried() -> None:
    async def scenario(emulator: SlackEmulator, app: AsyncApp, seen: list[Any]) -> None:
        @app.event("message")
        async def on_message(event: dict) -> None:
            seen.append(event)

        emulator.user_post(CAROL, HELP, "hello")
        await emulator.wait_idle_async()

    with SlackEmulator() as emulator:
        assert run_with_bolt(emulator, scenario, secret="not-the-secret") == []
        [delivery] = emulator.deliveries
        assert [a.status for a in delivery.attempts] == [401, 401, 401, 401]
        assert [a.retry_reason for a in delivery.attempts] == [None, "http_error", "http_error", "http_error"]


def test_slash_command_ack_and_response_url() -> None:
    async def scenario(emulator: SlackEmulator, app: AsyncApp, seen: list[Any]) -> None:
        @app.command("/desk")
        async def desk(ack: Any, command: dict, respond: Any) -> None:
            seen.append(command)
            await ack("Closing #1")
            await respond(text="#1 closed by alice", response_type="in_channel")

        interaction = emulator.user_command(ALICE, TRIAGE, "/desk", "close 1")
        await interaction.wait_async()
        await emulator.wait_for_async(lambda: len(emulator.response_posts) == 2)

    with SlackEmulator() as emulator:
        [command] = run_with_bolt(emulator, scenario)
        assert {k: command[k] for k in ("command", "text", "user_id", "channel_id", "team_id")} == {
            "command": "/desk",
            "text": "close 1",
            "user_id": ALICE,
            "channel_id": TRIAGE,
            "team_id": "T0HOME",
        }
        assert command["response_url"].startswith(emulator.base_url)
        assert [e.text for e in emulator.ephemerals(TRIAGE, ALICE)] == ["Closing #1"]
        assert emulator.messages(TRIAGE)[-1].text == "#1 closed by alice"


def test_shortcut_opens_a_modal_and_submission_closes_it() -> None:
    view = {
        "type": "modal",
        "callback_id": "new_ticket",
        "title": {"type": "plain_text", "text": "Create ticket"},
        "submit": {"type": "plain_text", "text": "Create"},
        "blocks": [
            {
                "type": "input",
                "block_id": "subject",
                "label": {"type": "plain_text", "text": "Subject"},
                "element": {"type": "plain_text_input", "action_id": "value"},
            }
        ],
    }

    async def scenario(emulator: SlackEmulator, app: AsyncApp, seen: list[Any]) -> None:
        @app.shortcut("create_ticket")
        async def shortcut(ack: Any, body: dict, client: AsyncWebClient) -> None:
            await ack()
            seen.append(body)
            await client.views_open(trigger_id=body["trigger_id"], view=view)

        @app.view("new_ticket")
        async def submitted(ack: Any, view: dict) -> None:
            await ack()
            seen.append(view["state"]["values"])

        ts = emulator.user_post(CAROL, HELP, "VPN is down")
        await emulator.wait_idle_async()
        await emulator.user_shortcut(ALICE, HELP, ts).wait_async()
        opened = await emulator.wait_for_async(emulator.views)
        await emulator.user_view_submission(ALICE, opened[0].id, {"subject": {"value": "VPN"}}).wait_async()

    with SlackEmulator() as emulator:
        shortcut, values = run_with_bolt(emulator, scenario)
        assert shortcut["type"] == "message_action" and shortcut["message"]["text"] == "VPN is down"
        assert values == {"subject": {"value": {"type": "plain_text_input", "value": "VPN"}}}
        assert emulator.views()[0].closed


def test_block_action_replaces_the_original() -> None:
    blocks = [
        {
            "type": "actions",
            "block_id": "card",
            "elements": [
                {
                    "type": "button",
                    "action_id": "close",
                    "value": "42",
                    "text": {"type": "plain_text", "text": "Close"},
                }
            ],
        }
    ]

    async def scenario(emulator: SlackEmulator, app: AsyncApp, seen: list[Any]) -> None:
        @app.action("close")
        async def close(ack: Any, body: dict, respond: Any) -> None:
            await ack()
            seen.append(body)
            await respond(text="#42 closed", replace_original=True)

        posted = await app.client.chat_postMessage(channel=TRIAGE, text="#42", blocks=blocks)
        await emulator.user_block_action(ALICE, TRIAGE, posted["ts"], "close").wait_async()
        await emulator.wait_for_async(lambda: emulator.response_posts)
        seen.append(posted["ts"])

    with SlackEmulator() as emulator:
        body, ts = run_with_bolt(emulator, scenario)
        assert body["actions"][0] == {
            **body["actions"][0],
            "action_id": "close",
            "block_id": "card",
            "value": "42",
        }
        assert body["container"]["message_ts"] == ts
        assert body["message"]["blocks"] == blocks
        assert emulator.message(TRIAGE, ts).text == "#42 closed"


def test_redelivered_event_keeps_its_event_id() -> None:
    async def scenario(emulator: SlackEmulator, app: AsyncApp, seen: list[Any]) -> None:
        @app.event("message")
        async def on_message(body: dict) -> None:
            seen.append(body["event_id"])

        emulator.user_post(CAROL, HELP, "once")
        await emulator.wait_idle_async()
        emulator.redeliver(emulator.events[-1]["event_id"])
        await emulator.wait_idle_async()

    with SlackEmulator() as emulator:
        first, second = run_with_bolt(emulator, scenario)
        assert first == second
