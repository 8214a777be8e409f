"""The per-person command rate limit of the /desk and card listeners."""

from __future__ import annotations

from bot.listeners.command_rate import CommandRate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_refill_rate_per_person():
    clock = Clock()
    rate = CommandRate(per_minute=60, burst=3, clock=clock)
    assert [rate.allow("U0ALICE") for _ in range(4)] == [True, True, True, False]
    # Someone else has their own bucket.
    assert rate.allow("U0BOB")
    clock.now += 1.0
    assert rate.allow("U0ALICE") and not rate.allow("U0ALICE")
    clock.now += 60.0
    assert [rate.allow("U0ALICE") for _ in range(4)] == [True, True, True, False]


def test_idle_people_are_forgotten():
    clock = Clock()
    rate = CommandRate(per_minute=60, burst=3, clock=clock)
    for index in range(10_001):
        rate.allow(f"U{index}")
    clock.now += 10.0
    rate.allow("U0ALICE")
    assert len(rate._buckets) == 1
