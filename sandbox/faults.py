"""Faults the emulator injects into Web API calls, per method and optionally per channel.

Each kind is a failure the delivery code must survive in production: Slack's 429, its 5xx, a request
that never answers, a post that takes effect but whose answer is lost (the double-post case), and the
Slack error codes that mean the token is gone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    RATELIMITED = "ratelimited"  # HTTP 429 + Retry-After, body {"ok": false, "error": "ratelimited"}
    SERVER_ERROR = "server_error"  # HTTP 500/503 with an HTML body, as Slack's edge answers
    HANG = "hang"  # no answer for `seconds`, then the call proceeds as usual
    RESET_BEFORE_EFFECT = "reset_before_effect"  # connection dropped, nothing happened
    RESET_AFTER_EFFECT = "reset_after_effect"  # the call takes effect, then the connection is dropped
    SLACK_ERROR = "slack_error"  # HTTP 200 {"ok": false, "error": error}


# The method name under which faults for posts to a response_url are added (the resets only).
RESPONSE_URL_FAULTS = "response_url"


@dataclass
class Fault:
    kind: FaultKind
    retry_after: int = 1
    status: int = 500
    seconds: float = 5.0
    error: str = "internal_error"

    @classmethod
    def ratelimited(cls, retry_after: int = 1) -> Fault:
        return cls(FaultKind.RATELIMITED, retry_after=max(1, retry_after))

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(FaultKind.SERVER_ERROR, status=status)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls(FaultKind.HANG, seconds=seconds)

    @classmethod
    def reset_before_effect(cls) -> Fault:
        return cls(FaultKind.RESET_BEFORE_EFFECT)

    @classmethod
    def reset_after_effect(cls) -> Fault:
        return cls(FaultKind.RESET_AFTER_EFFECT)

    @classmethod
    def slack_error(cls, error: str) -> Fault:
        return cls(FaultKind.SLACK_ERROR, error=error)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Fault:
        kind = FaultKind(str(data["kind"]))
        fault = cls(kind)
        if "retry_after" in data:
            fault.retry_after = max(1, int(str(data["retry_after"])))
        if "status" in data:
            fault.status = int(str(data["status"]))
        if "seconds" in data:
            fault.seconds = float(str(data["seconds"]))
        if "error" in data:
            fault.error = str(data["error"])
        return fault


@dataclass
class FaultRule:
    method: str  # "*" matches every method
    fault: Fault
    channel: str | None = None
    remaining: int | None = 1  # None: until cleared
    hits: int = 0

    def matches(self, method: str, channel: str | None) -> bool:
        if self.method not in ("*", method):
            return False
        return self.channel is None or self.channel == channel


class FaultInjector:
    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(
        self, method: str, fault: Fault, *, channel: str | None = None, times: int | None = 1
    ) -> FaultRule:
        rule = FaultRule(method=method, fault=fault, channel=channel, remaining=times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self, method: str | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if method is not None and r.method != method]

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, method: str, channel: str | None) -> Fault | None:
        """The fault this call meets, if any; a rule with a count is used up once per call."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, channel):
                    continue
                rule.hits += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return rule.fault
        return None
