"""The emulator refuses select menus Slack refuses (`invalid_blocks`): more than 100 options or
option groups, option text over 75 characters, values over 150, initial options not among the
options. It accepted all of these, so a card with 150 label options passed every test."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import BOT_TOKEN, TRIAGE


@pytest.fixture
def client(emulator: SlackEmulator) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=emulator.api_url, retry_handlers=[], timeout=5)


def option(text: str, value: str | None = None) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value if value is not None else text}


def menu(**fields: Any) -> list[dict[str, Any]]:
    element = {"type": "multi_static_select", "action_id": "labels", **fields}
    return [{"type": "actions", "elements": [element]}]


@pytest.mark.parametrize(
    "blocks",
    [
        menu(options=[option(f"o{n}") for n in range(101)]),
        menu(options=[option("x" * 76, "x")]),
        menu(options=[option("x", "v" * 151)]),
        menu(options=[option("a")], initial_options=[option("b")]),
        menu(
            option_groups=[
                {
                    "label": {"type": "plain_text", "text": f"g{g}"},
                    "options": [option(f"{g}-{n}") for n in range(101)],
                }
                for g in range(2)
            ]
        ),
    ],
    ids=["101-options", "long-option-text", "long-value", "initial-not-an-option", "group-of-101"],
)
def test_select_menus_slack_refuses_are_refused(client: WebClient, blocks: list[dict[str, Any]]) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=TRIAGE, text="x", blocks=blocks)
    assert raised.value.response["error"] == "invalid_blocks"


def test_menus_within_the_limits_are_accepted(client: WebClient) -> None:
    groups = [
        {
            "label": {"type": "plain_text", "text": f"g{g}"},
            "options": [option(f"{g}-{n}") for n in range(100)],
        }
        for g in range(2)
    ]
    for blocks in (
        menu(options=[option(f"o{n}") for n in range(100)], initial_options=[option("o7")]),
        menu(option_groups=groups, initial_options=[option("1-99")]),
    ):
        assert client.chat_postMessage(channel=TRIAGE, text="x", blocks=blocks)["ok"]
