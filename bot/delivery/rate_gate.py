"""Pacing and 429 back-off for one process's Slack calls, kept in memory.

Slack limits `chat.postMessage` to about one message per second per channel with short bursts, plus
a workspace-wide cap, and every other method per method by its tier (api.slack.com/apis/rate-limits).
The gate keeps a schedule per key — (`post`, channel), (`post-workspace`), (`method`, name) — using the
generic cell rate algorithm: each admitted call reserves the next slot of its keys. A call whose slot
is a few seconds away waits for it in process; one further away goes back to the outbox with a delay
(`Deferred`), so the row holds no worker slot while a sick channel or method recovers and everything
else keeps flowing. A 429 moves its key's next slot to after `Retry-After`.

The schedule is per process. Several workers share Slack's limits: each is told how many are alive
(`share_among`, from `store.worker_presence`) and keeps that share of every limit, so together they
keep to it; a 429 that still comes (a worker joined since the last count) is honoured. With
`pacing` off (an endpoint without Slack's limits, such as the sandbox emulator) only 429s hold calls
back, and a key that was answered 429 is paced from then on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]

POST = "chat.postMessage"
# Slack: "1 per second, short bursts >1 allowed", and a workspace-wide limit it does not publish;
# 300 a minute is what the sandbox emulator enforces and sits well below what Slack tolerates.
POST_PER_SECOND = 1.0
POST_BURST = 3
POST_WORKSPACE_PER_MINUTE = 300
TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}
# Tiers from each method's reference page, for the methods delivery calls.
METHOD_TIERS = {
    "auth.test": 4,
    "chat.delete": 3,
    "chat.update": 3,
    "conversations.history": 3,
    "conversations.replies": 3,
    "files.completeUploadExternal": 4,
    "files.getUploadURLExternal": 4,
    "files.info": 4,
    "reactions.add": 3,
    "reactions.remove": 2,
    "users.info": 4,
}
DEFAULT_TIER = 3
# Calls are spaced this much wider than the published limits: a request that reaches Slack a little
# late must not make the next one look early.
MARGIN = 1.05
# How far ahead a call may wait in process for its slot; beyond that it goes back to the outbox.
DEFAULT_HORIZON = 5.0


@dataclass
class _Schedule:
    """One key's GCRA state: `interval` between calls, `burst` calls allowed back to back; this
    process's share of the limit (`base_interval`, `base_burst`) when `share` workers divide it."""

    base_interval: float
    base_burst: int
    share: int = 1
    next_free: float = 0.0  # the theoretical arrival time of the next call
    blocked_until: float = 0.0  # set by a 429
    deferred_until: float = 0.0  # the last slot handed to a deferred call, to spread their return

    @property
    def interval(self) -> float:
        return self.base_interval * self.share

    @property
    def burst(self) -> int:
        return max(1, self.base_burst // self.share)

    def earliest(self, now: float) -> float:
        """When a call may start, without reserving."""
        tolerance = self.interval * (self.burst - 1)
        return max(now, self.next_free - tolerance, self.blocked_until)

    def reserve(self, at: float) -> None:
        self.next_free = max(self.next_free, at) + self.interval


@dataclass(frozen=True)
class Admitted:
    wait: float  # seconds to sleep before calling (0: call now)


@dataclass(frozen=True)
class Deferred:
    delay: float  # come back after this many seconds
    reason: str


@dataclass
class RateGate:
    clock: Clock = time.monotonic
    horizon: float = DEFAULT_HORIZON
    pacing: bool = True
    rng: random.Random = field(default_factory=random.Random)
    _schedules: dict[tuple[str, str], _Schedule] = field(default_factory=dict)
    _share: int = 1
    # Channels whose posts a 429 holds back, and until when: two at once are the workspace's cap.
    _post_blocks: dict[str, float] = field(default_factory=dict)

    def share_among(self, workers: int) -> None:
        """`workers` processes (this one included) deliver to this workspace: keep 1/workers of
        each limit."""
        self._share = max(1, workers)
        for schedule in self._schedules.values():
            schedule.share = self._share

    # ----- keys -----

    def _schedule(self, key: tuple[str, str]) -> _Schedule:
        schedule = self._schedules.get(key)
        if schedule is None:
            schedule = self._new_schedule(key)
            schedule.share = self._share
            self._schedules[key] = schedule
        return schedule

    def _new_schedule(self, key: tuple[str, str]) -> _Schedule:
        if not self.pacing:
            return _Schedule(base_interval=0.0, base_burst=1)
        return self._paced_schedule(key)

    @staticmethod
    def _paced_schedule(key: tuple[str, str]) -> _Schedule:
        kind, name = key
        if kind == "post":
            return _Schedule(base_interval=MARGIN / POST_PER_SECOND, base_burst=POST_BURST)
        if kind == "post-workspace":
            # Bursts up to a few seconds' worth; the minute's budget is spread evenly.
            # A minute's allowance may go at once (the cap is per minute); then the steady rate.
            return _Schedule(
                base_interval=MARGIN * 60.0 / POST_WORKSPACE_PER_MINUTE,
                base_burst=POST_WORKSPACE_PER_MINUTE,
            )
        per_minute = TIER_PER_MINUTE[METHOD_TIERS.get(name, DEFAULT_TIER)]
        # "Sporadic bursts are welcome": a tenth of the minute's budget back to back.
        return _Schedule(base_interval=MARGIN * 60.0 / per_minute, base_burst=max(1, per_minute // 10))

    @staticmethod
    def keys(method: str, channel: str | None) -> list[tuple[str, str]]:
        if method == POST:
            return [("post", channel or ""), ("post-workspace", "")]
        return [("method", method)]

    # ----- admission -----

    def admit(self, method: str, channel: str | None) -> Admitted | Deferred:
        """Reserve a slot for one call, or say when to come back."""
        now = self.clock()
        schedules = [self._schedule(key) for key in self.keys(method, channel)]
        start = max(schedule.earliest(now) for schedule in schedules)
        wait = start - now
        if wait <= self.horizon:
            for schedule in schedules:
                # Each key counts the call at its own earliest slot: a post held back by its
                # channel must not use up workspace slots other channels could use meanwhile.
                schedule.reserve(schedule.earliest(now))
            return Admitted(wait=wait)
        # Hand deferred calls distinct slots past the horizon, so a backlog returns spread out
        # instead of all at once (each would be deferred again, over and over).
        limiting = max(schedules, key=lambda schedule: schedule.earliest(now))
        slot = max(limiting.deferred_until, start - self.horizon) + limiting.interval
        limiting.deferred_until = slot
        jitter = self.rng.uniform(0, limiting.interval)
        where = f"{method} in {channel}" if method == POST else method
        return Deferred(delay=slot - now + jitter, reason=f"paced: {where} is busy")

    def blocked(self, method: str, channel: str | None, retry_after: float) -> None:
        """Slack answered 429: nothing more on this key until Retry-After has passed.

        A post is limited per channel (the workspace cap shows up as 429s on every channel);
        every other method per method.
        """
        key = ("post", channel or "") if method == POST else ("method", method)
        if method == POST:
            self._workspace_cap(channel or "", retry_after)
        schedule = self._schedule(key)
        if not self.pacing and schedule.base_interval == 0.0:
            # Unpaced, every call held back by this block would come back the moment it ends, all
            # at once, and Slack would refuse all but a few of them again, over and over (a storm
            # of 429s: seven refusals a post under a flood). An endpoint that answers 429 has
            # Slack's limits after all: this key keeps Slack's published pace from now on, so the
            # held calls come back one by one.
            paced = self._paced_schedule(key)
            paced.share = schedule.share
            paced.blocked_until = schedule.blocked_until
            self._schedules[key] = schedule = paced
        schedule.blocked_until = max(schedule.blocked_until, self.clock() + max(retry_after, 0.0))
        # Slack's allowance for the key is spent: when the block ends, one call, then the steady
        # pace; not a burst, which Slack would refuse but the first of.
        schedule.next_free = max(
            schedule.next_free, schedule.blocked_until + schedule.interval * (schedule.burst - 1)
        )

    def _workspace_cap(self, channel: str, retry_after: float) -> None:
        """Slack answers its workspace-wide posting cap with a 429 on whichever channel posts, no
        different from one channel's own. Taken as that channel's alone, every other channel would
        collect a 429 of its own, one after another. Refused on two channels whose blocks overlap,
        it is taken as the workspace's: no post goes anywhere until Retry-After has passed (two
        channels both over their own limit at once lose at most that wait)."""
        now = self.clock()
        until = now + max(retry_after, 0.0)
        self._post_blocks = {c: t for c, t in self._post_blocks.items() if t > now}
        others = [c for c in self._post_blocks if c != channel]
        self._post_blocks[channel] = max(self._post_blocks.get(channel, 0.0), until)
        if others:
            workspace = self._schedule(("post-workspace", ""))
            workspace.blocked_until = max(workspace.blocked_until, until)

    def blocked_for(self, method: str, channel: str | None) -> float:
        """Seconds left of a 429 block on this call's keys (0 when none)."""
        now = self.clock()
        left = [self._schedule(key).blocked_until - now for key in self.keys(method, channel)]
        return max(0.0, *left)
