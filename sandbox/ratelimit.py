"""Slack's Web API rate limits, as token buckets on an injectable clock.

Slack limits each method per app per workspace by tier (api.slack.com/apis/rate-limits: tier 1 1+/min,
tier 2 20+/min, tier 3 50+/min, tier 4 100+/min) and chat.postMessage specially: about one message per
second per channel with short bursts, plus a workspace-wide cap. A bucket holds one minute's worth of
calls for tiered methods (Slack tolerates bursts) and refills continuously.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}

# Method tiers as published in each method's reference page ("Rate limits" fact).
METHOD_TIERS: dict[str, int] = {
    "apps.connections.open": 1,
    "auth.test": 4,
    "chat.delete": 3,
    "chat.getPermalink": 4,
    "chat.postEphemeral": 4,
    "chat.update": 3,
    "conversations.history": 3,
    "conversations.info": 3,
    "conversations.join": 3,
    "conversations.members": 4,
    "conversations.replies": 3,
    "files.completeUploadExternal": 4,
    "files.delete": 3,
    "files.getUploadURLExternal": 4,
    "files.info": 4,
    "reactions.add": 3,
    "reactions.get": 3,
    "reactions.remove": 2,
    "users.info": 4,
    "users.lookupByEmail": 3,
    "views.open": 4,
    "views.publish": 4,
    "views.update": 4,
}
DEFAULT_TIER = 3

POST_PER_CHANNEL_RATE = 1.0  # tokens per second
POST_PER_CHANNEL_BURST = 3
POST_WORKSPACE_PER_MINUTE = 300


class ManualClock:
    """A clock tests move by hand, so bucket tests need no sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class TokenBucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now

    def wait(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Take one token; return 0 on success or the seconds until one is available."""
        self.refill(now)
        wait = self.wait()
        if not wait:
            self.tokens -= 1
        return wait


def retry_after_seconds(wait: float) -> int:
    # Slack sends whole seconds, never 0 (a client that sleeps 0 would hammer it).
    return max(1, math.ceil(wait))


class RateLimiter:
    """Decides whether a call is limited; off until a test enables it."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.enabled = False
        self.clock: Clock = clock or time.monotonic
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def _bucket(self, key: tuple[str, str], capacity: float, rate: float, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(capacity=capacity, rate=rate, tokens=capacity, updated=now)
            self._buckets[key] = bucket
        return bucket

    def check(self, method: str, channel: str | None) -> int | None:
        """Return None when the call may proceed, or the Retry-After seconds when it is limited."""
        if not self.enabled:
            return None
        with self._lock:
            now = self.clock()
            if method == "chat.postMessage":
                return self._check_post(channel or "", now)
            per_minute = TIER_PER_MINUTE[METHOD_TIERS.get(method, DEFAULT_TIER)]
            bucket = self._bucket(("method", method), per_minute, per_minute / 60.0, now)
            wait = bucket.take(now)
            return retry_after_seconds(wait) if wait else None

    def _check_post(self, channel: str, now: float) -> int | None:
        workspace = self._bucket(
            ("post-workspace", ""), POST_WORKSPACE_PER_MINUTE, POST_WORKSPACE_PER_MINUTE / 60.0, now
        )
        per_channel = self._bucket(
            ("post-channel", channel), POST_PER_CHANNEL_BURST, POST_PER_CHANNEL_RATE, now
        )
        # A post spends from both buckets, and only when both allow it: a post refused for its
        # channel must not use up the workspace's allowance.
        for bucket in (workspace, per_channel):
            bucket.refill(now)
        wait = max(workspace.wait(), per_channel.wait())
        if wait:
            return retry_after_seconds(wait)
        workspace.tokens -= 1
        per_channel.tokens -= 1
        return None
