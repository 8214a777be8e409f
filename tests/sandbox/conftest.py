"""Fixtures: a running emulator and the real slack_sdk WebClient pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import BOT_TOKEN


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    emu = SlackEmulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def client(emulator: SlackEmulator) -> WebClient:
    # No automatic retries: tests see each answer as the emulator gave it.
    return WebClient(token=BOT_TOKEN, base_url=emulator.api_url, retry_handlers=[], timeout=5)
