"""Send an app what Slack sends it: signed Events API envelopes, slash commands and interactivity.

Signing is Slack's v0 scheme: HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret, sent as
`X-Slack-Signature: v0=<hex>` with `X-Slack-Request-Timestamp`. Events are retried as Slack retries
them: when the app answers non-2xx, fails to connect, or takes longer than 3 s, up to 3 retries
(Slack waits ~immediately, 1 min, 5 min; the delays are configurable so tests stay fast) with the same
`event_id` and `X-Slack-Retry-Num` / `X-Slack-Retry-Reason` headers. An answer carrying
`X-Slack-No-Retry: 1` stops the retries. Commands and interactions are never retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from sandbox.workspace import SIGNING_SECRET

JSON = dict[str, Any]
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


def signature_for(signing_secret: str, timestamp: int | str, body: bytes | str) -> str:
    raw = body.decode() if isinstance(body, bytes) else body
    base = f"v0:{timestamp}:{raw}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def encode_command(form: dict[str, str]) -> bytes:
    return urlencode(form).encode()


def encode_interaction(payload: JSON) -> bytes:
    # Slack posts interactivity as a form with one field, `payload`, holding JSON.
    return urlencode({"payload": json.dumps(payload)}).encode()


@dataclass
class RetryPolicy:
    """Delays before retry 1, 2 and 3, and how long Slack waits for an answer."""

    delays: tuple[float, ...] = (0.0, 60.0, 300.0)
    timeout: float = 3.0

    @classmethod
    def fast(cls, timeout: float = 3.0) -> RetryPolicy:
        return cls(delays=(0.0, 0.05, 0.1), timeout=timeout)


@dataclass
class Attempt:
    retry_num: int
    retry_reason: str | None
    status: int | None  # None when no HTTP answer arrived
    body: str
    headers: dict[str, str]  # lower-cased names
    latency: float  # seconds, monotonic
    error: str | None = None  # http_timeout, connection_failed

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def failure_reason(self) -> str:
        if self.error:
            return self.error
        return "http_error"


@dataclass
class Delivery:
    kind: str  # event, command, interaction, raw
    url: str
    payload: Any
    event_id: str | None = None
    via: str = "http"  # or socket_mode
    attempts: list[Attempt] = field(default_factory=list)
    done: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].ok

    @property
    def status(self) -> int | None:
        return self.attempts[-1].status if self.attempts else None

    @property
    def response_body(self) -> str:
        return self.attempts[-1].body if self.attempts else ""

    def response_json(self) -> Any:
        body = self.response_body
        try:
            return json.loads(body) if body else None
        except ValueError:
            return None


class RequestSender:
    """Delivers signed requests to one app URL and records every attempt and answer."""

    def __init__(
        self,
        url: str,
        signing_secret: str = SIGNING_SECRET,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[Delivery], None] | None = None,
        on_start: Callable[[Delivery], None] | None = None,
    ) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.on_change = on_change
        self.on_start = on_start
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def _record(self, delivery: Delivery) -> None:
        if self.on_change is not None:
            self.on_change(delivery)

    def headers(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        signing_secret: str | None = None,
    ) -> dict[str, str]:
        """Slack's request headers; pass `signature` or `timestamp` to forge or replay a request."""
        ts = int(self.clock()) if timestamp is None else timestamp
        return {
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature or signature_for(signing_secret or self.signing_secret, ts, body),
        }

    async def post(
        self,
        body: bytes,
        content_type: str,
        *,
        url: str | None = None,
        retry_num: int = 0,
        retry_reason: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        signing_secret: str | None = None,
        extra_headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Attempt:
        """One signed POST; never raises for network trouble, which becomes the Attempt's error."""
        headers = self.headers(
            body, content_type, timestamp=timestamp, signature=signature, signing_secret=signing_secret
        )
        if retry_num:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_error"
        headers.update(extra_headers or {})
        started = time.monotonic()
        client_timeout = aiohttp.ClientTimeout(total=timeout if timeout is not None else self.retry.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=client_timeout) as session,
                session.post(url or self.url, data=body, headers=headers, allow_redirects=False) as response,
            ):
                text = await response.text(errors="replace")
                return Attempt(
                    retry_num,
                    retry_reason,
                    response.status,
                    text,
                    {key.lower(): value for key, value in response.headers.items()},
                    time.monotonic() - started,
                )
        except TimeoutError:
            return Attempt(retry_num, retry_reason, None, "", {}, time.monotonic() - started, "http_timeout")
        except aiohttp.ClientError as error:
            return Attempt(
                retry_num, retry_reason, None, str(error), {}, time.monotonic() - started, "connection_failed"
            )

    async def _deliver(
        self, delivery: Delivery, body: bytes, content_type: str, retries: bool, **sign: Any
    ) -> Delivery:
        with self._lock:
            self.deliveries.append(delivery)
        if self.on_start is not None:
            self.on_start(delivery)
        reason: str | None = None
        for retry_num in range(len(self.retry.delays) + 1):
            if retry_num:
                await asyncio.sleep(self.retry.delays[retry_num - 1])
            attempt = await self.post(body, content_type, retry_num=retry_num, retry_reason=reason, **sign)
            delivery.attempts.append(attempt)
            self._record(delivery)
            if attempt.ok or not retries or attempt.headers.get("x-slack-no-retry") == "1":
                break
            reason = attempt.failure_reason
        delivery.done = True
        self._record(delivery)
        return delivery

    async def send_event(self, envelope: JSON, *, retries: bool = True, **sign: Any) -> Delivery:
        """POST an Events API envelope (JSON); retried like Slack unless `retries=False`."""
        body = json.dumps(envelope).encode()
        delivery = Delivery("event", self.url, envelope, event_id=envelope.get("event_id"))
        return await self._deliver(delivery, body, "application/json", retries, **sign)

    async def send_command(self, form: dict[str, str], **sign: Any) -> Delivery:
        delivery = Delivery("command", self.url, form)
        return await self._deliver(
            delivery, encode_command(form), "application/x-www-form-urlencoded", False, **sign
        )

    async def send_interaction(self, payload: JSON, **sign: Any) -> Delivery:
        delivery = Delivery("interaction", self.url, payload)
        body = encode_interaction(payload)
        return await self._deliver(delivery, body, "application/x-www-form-urlencoded", False, **sign)

    async def send_url_verification(self, challenge: str = "sandbox-challenge") -> Delivery:
        payload = {"token": "sandbox-verification-token", "challenge": challenge, "type": "url_verification"}
        delivery = Delivery("event", self.url, payload)
        return await self._deliver(delivery, json.dumps(payload).encode(), "application/json", False)

    # Synchronous conveniences for tests that are not async; each runs its own event loop.
    def send_event_sync(self, envelope: JSON, **kwargs: Any) -> Delivery:
        return asyncio.run(self.send_event(envelope, **kwargs))

    def send_command_sync(self, form: dict[str, str], **kwargs: Any) -> Delivery:
        return asyncio.run(self.send_command(form, **kwargs))

    def send_interaction_sync(self, payload: JSON, **kwargs: Any) -> Delivery:
        return asyncio.run(self.send_interaction(payload, **kwargs))
