"""A per-person limit on triage commands and card presses (the design's "command rate" limit).

A token bucket per user, in memory: a burst of `burst` commands, refilled at `per_minute`. It
guards the database and the triage threads against a runaway script or a stuck key, not against a
determined attacker (who is staff anyway); each web process keeps its own buckets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

TOO_FAST = (
    "You're sending commands faster than the desk takes them; nothing changed. Try again in a few seconds."
)


@dataclass
class CommandRate:
    per_minute: float = 60.0
    burst: float = 20.0
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def allow(self, user_id: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.get(user_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_minute / 60.0)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            return False
        self._buckets[user_id] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:
            # Forget buckets that have refilled since: only people actively sending need remembering.
            refill_seconds = self.burst * 60.0 / self.per_minute
            self._buckets = {u: b for u, b in self._buckets.items() if now - b[1] < refill_seconds}
        return True
