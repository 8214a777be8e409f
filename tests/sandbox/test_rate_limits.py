"""Slack's rate limits: the per-channel bucket for chat.postMessage, tiers, and 429 with Retry-After."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from sandbox.ratelimit import ManualClock, RateLimiter
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import BOT_TOKEN, HELP, TRIAGE


def post_status(client: WebClient, channel: str) -> tuple[int, str | None]:
    try:
        client.chat_postMessage(channel=channel, text="x")
        return 200, None
    except SlackApiError as error:
        return error.response.status_code, error.response.headers.get("Retry-After")


def test_channel_bucket_bursts_three_then_429_while_other_channels_post(
    emulator: SlackEmulator, client: WebClient
) -> None:
    clock = ManualClock()
    emulator.rate_limits(enabled=True, clock=clock)
    assert [post_status(client, TRIAGE)[0] for _ in range(3)] == [200, 200, 200]
    status, retry_after = post_status(client, TRIAGE)
    assert status == 429 and retry_after == "1"
    assert post_status(client, HELP) == (200, None)

    call = emulator.calls_to("chat.postMessage", channel=TRIAGE)[-1]
    assert (call.status, call.error) == (429, "ratelimited")
    clock.advance(1.0)
    assert post_status(client, TRIAGE) == (200, None)
    assert post_status(client, TRIAGE)[0] == 429


def test_ratelimited_body_is_slack_shaped(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.rate_limits(enabled=True, clock=ManualClock())
    for _ in range(3):
        client.chat_postMessage(channel=TRIAGE, text="x")
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=TRIAGE, text="x")
    assert raised.value.response.data == {"ok": False, "error": "ratelimited"}


def test_workspace_cap_on_posting() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock)
    limiter.enabled = True
    allowed = 0
    for n in range(400):
        if limiter.check("chat.postMessage", f"C{n}") is None:
            allowed += 1
    assert allowed == 300
    clock.advance(60)
    assert limiter.check("chat.postMessage", "C0") is None


@pytest.mark.parametrize(
    ("method", "per_minute"), [("chat.update", 50), ("users.info", 100), ("reactions.remove", 20)]
)
def test_tier_limits(method: str, per_minute: int) -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock)
    limiter.enabled = True
    results = [limiter.check(method, None) for _ in range(per_minute + 1)]
    assert results[:-1] == [None] * per_minute
    retry_after = results[-1]
    assert retry_after is not None and retry_after >= 1
    clock.advance(retry_after)
    assert limiter.check(method, None) is None


def test_limits_are_off_until_enabled(emulator: SlackEmulator, client: WebClient) -> None:
    for _ in range(10):
        client.chat_postMessage(channel=TRIAGE, text="x")


def test_slack_sdk_retry_handler_waits_and_succeeds(emulator: SlackEmulator) -> None:
    from sandbox.faults import Fault

    emulator.add_fault("chat.postMessage", Fault.ratelimited(retry_after=1))
    client = WebClient(
        token=BOT_TOKEN,
        base_url=emulator.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    assert client.chat_postMessage(channel=TRIAGE, text="eventually")["ok"]
    assert [c.status for c in emulator.calls_to("chat.postMessage")] == [429, 200]
    assert len(emulator.messages(TRIAGE)) == 1
