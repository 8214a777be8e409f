"""The request sender: Slack's signing (checked by slack_sdk's own SignatureVerifier) and its retries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from sandbox.sender import RequestSender, RetryPolicy, signature_for
from sandbox.workspace import SIGNING_SECRET

Answer = Callable[[int], Awaitable[web.Response]]
ENVELOPE = {"type": "event_callback", "event_id": "Ev0001", "event": {"type": "message", "text": "hi"}}


class Recorder:
    """A tiny app that records each request and answers with `answer(n)` for the n-th request."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return await self.answer(len(self.requests))


async def with_recorder(answer: Answer, body: Callable[[str, Recorder], Awaitable[Any]]) -> Any:
    recorder = Recorder(answer)
    app = web.Application()
    app.router.add_post("/slack/events", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        return await body(f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events", recorder)
    finally:
        await runner.cleanup()


async def ok(n: int) -> web.Response:
    return web.Response(text="")


def verified(headers: dict[str, str], body: bytes, secret: str = SIGNING_SECRET) -> bool:
    return SignatureVerifier(secret).is_valid_request(body, headers)


def test_event_is_signed_as_slack_signs() -> None:
    async def body(url: str, recorder: Recorder) -> None:
        delivery = await RequestSender(url).send_event(ENVELOPE)
        assert delivery.ok and len(delivery.attempts) == 1
        headers, raw = recorder.requests[0]
        assert headers["Content-Type"] == "application/json"
        assert json.loads(raw) == ENVELOPE
        assert verified(headers, raw)
        assert "X-Slack-Retry-Num" not in headers

    asyncio.run(with_recorder(ok, body))


def test_command_and_interaction_forms() -> None:
    async def body(url: str, recorder: Recorder) -> None:
        sender = RequestSender(url)
        await sender.send_command({"command": "/desk", "text": "close 1"})
        await sender.send_interaction({"type": "block_actions", "actions": []})
        (h1, b1), (h2, b2) = recorder.requests
        assert h1["Content-Type"] == "application/x-www-form-urlencoded"
        assert parse_qs(b1.decode()) == {"command": ["/desk"], "text": ["close 1"]}
        assert json.loads(parse_qs(b2.decode())["payload"][0]) == {"type": "block_actions", "actions": []}
        assert verified(h1, b1) and verified(h2, b2)

    asyncio.run(with_recorder(ok, body))


def test_forged_signature_and_stale_timestamp_fail_verification() -> None:
    async def body(url: str, recorder: Recorder) -> None:
        sender = RequestSender(url)
        await sender.send_event(ENVELOPE, signature="v0=" + "0" * 64, retries=False)
        await sender.send_event(ENVELOPE, timestamp=int(time.time()) - 600, retries=False)
        await sender.send_event(ENVELOPE, signing_secret="someone-else", retries=False)
        assert [verified(h, b) for h, b in recorder.requests] == [False, False, False]

    asyncio.run(with_recorder(ok, body))


def test_signature_for_matches_slacks_example() -> None:
    # The worked example from Slack's "Verifying requests from Slack" guide.
    body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    assert (
        signature_for("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, body)
        == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


def test_event_retries_carry_num_and_reason() -> None:
    async def fail_twice(n: int) -> web.Response:
        return web.Response(status=500 if n <= 2 else 200)

    async def body(url: str, recorder: Recorder) -> None:
        delivery = await RequestSender(url, retry=RetryPolicy.fast()).send_event(ENVELOPE)
        assert [a.status for a in delivery.attempts] == [500, 500, 200]
        retries = [(h.get("X-Slack-Retry-Num"), h.get("X-Slack-Retry-Reason")) for h, _ in recorder.requests]
        assert retries == [(None, None), ("1", "http_error"), ("2", "http_error")]
        assert {json.loads(b)["event_id"] for _, b in recorder.requests} == {"Ev0001"}
        assert all(verified(h, b) for h, b in recorder.requests)

    asyncio.run(with_recorder(fail_twice, body))


def test_a_slow_answer_is_retried_as_http_timeout() -> None:
    async def slow_first(n: int) -> web.Response:
        if n == 1:
            await asyncio.sleep(1.0)
        return web.Response(text="")

    async def body(url: str, recorder: Recorder) -> None:
        delivery = await RequestSender(url, retry=RetryPolicy.fast(timeout=0.2)).send_event(ENVELOPE)
        assert [(a.status, a.error) for a in delivery.attempts] == [(None, "http_timeout"), (200, None)]
        assert recorder.requests[1][0]["X-Slack-Retry-Reason"] == "http_timeout"

    asyncio.run(with_recorder(slow_first, body))


def test_gives_up_after_three_retries_and_honours_no_retry() -> None:
    async def always_503(n: int) -> web.Response:
        return web.Response(status=503, headers={"X-Slack-No-Retry": "1"} if n == 5 else {})

    async def body(url: str, recorder: Recorder) -> None:
        sender = RequestSender(url, retry=RetryPolicy.fast())
        delivery = await sender.send_event(ENVELOPE)
        assert len(delivery.attempts) == 4 and not delivery.ok and delivery.done
        second = await sender.send_event(ENVELOPE)
        assert len(second.attempts) == 1  # the app said X-Slack-No-Retry
        assert len(sender.deliveries) == 2

    asyncio.run(with_recorder(always_503, body))


def test_connection_refused_is_recorded() -> None:
    sender = RequestSender("http://127.0.0.1:9/slack/events", retry=RetryPolicy(delays=(), timeout=1))
    delivery = sender.send_event_sync(ENVELOPE)
    assert delivery.attempts[0].error == "connection_failed" and not delivery.ok
