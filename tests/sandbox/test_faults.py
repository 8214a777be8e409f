"""Each injected fault, as a client with no automatic retries sees it."""

from __future__ import annotations

import socket
import urllib.error

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler

from sandbox.faults import Fault
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import BOT_TOKEN, HELP, TRIAGE


def test_429_with_retry_after(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.add_fault("chat.postMessage", Fault.ratelimited(retry_after=7))
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=TRIAGE, text="x")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert client.chat_postMessage(channel=TRIAGE, text="x")["ok"]  # one call only


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors(emulator: SlackEmulator, client: WebClient, status: int) -> None:
    emulator.add_fault("chat.update", Fault.server_error(status))
    ts = client.chat_postMessage(channel=TRIAGE, text="x")["ts"]
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=TRIAGE, ts=ts, text="y")
    assert raised.value.response.status_code == status
    assert emulator.message(TRIAGE, ts).text == "x"


@pytest.mark.parametrize("error", ["invalid_auth", "token_revoked", "account_inactive"])
def test_slack_error_codes(emulator: SlackEmulator, client: WebClient, error: str) -> None:
    emulator.add_fault("*", Fault.slack_error(error), times=None)
    for _ in range(2):
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel=TRIAGE, text="x")
        assert raised.value.response["error"] == error
    emulator.clear_faults()
    assert client.chat_postMessage(channel=TRIAGE, text="x")["ok"]


def test_fault_for_one_channel_only(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.add_fault("chat.postMessage", Fault.server_error(503), channel=TRIAGE, times=2)
    assert client.chat_postMessage(channel=HELP, text="x")["ok"]
    for _ in range(2):
        with pytest.raises(SlackApiError):
            client.chat_postMessage(channel=TRIAGE, text="x")
    assert client.chat_postMessage(channel=TRIAGE, text="x")["ok"]


def test_hang_times_the_client_out(emulator: SlackEmulator) -> None:
    emulator.add_fault("chat.postMessage", Fault.hang(2.0))
    client = WebClient(token=BOT_TOKEN, base_url=emulator.api_url, retry_handlers=[], timeout=0.3)  # type: ignore[arg-type]  # urllib takes a float
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        client.chat_postMessage(channel=TRIAGE, text="slow")


def test_reset_before_effect_posts_nothing(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.add_fault("chat.postMessage", Fault.reset_before_effect())
    with pytest.raises((ConnectionError, urllib.error.URLError, OSError)):
        client.chat_postMessage(channel=TRIAGE, text="lost")
    assert emulator.messages(TRIAGE) == []


def test_reset_after_effect_posts_but_never_answers(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect())
    with pytest.raises((ConnectionError, urllib.error.URLError, OSError)):
        client.chat_postMessage(channel=TRIAGE, text="did it post?")
    assert [m.text for m in emulator.messages(TRIAGE)] == ["did it post?"]
    assert emulator.calls_to("chat.postMessage")[0].error == "connection_reset"


def test_reset_after_effect_is_a_double_post_for_a_retrying_client(emulator: SlackEmulator) -> None:
    # Why the design turns slack_sdk's retry handlers off: the connection-error retry re-posts.
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect())
    client = WebClient(
        token=BOT_TOKEN, base_url=emulator.api_url, retry_handlers=[ConnectionErrorRetryHandler()]
    )
    client.chat_postMessage(channel=TRIAGE, text="twice")
    assert [m.text for m in emulator.messages(TRIAGE)] == ["twice", "twice"]
