"""Edge first: the worker's turns are spaced while intake items pour in, and free otherwise."""

from __future__ import annotations

import asyncio

from bot.worker_pace import EdgeFirst


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pace(clock: Clock, slept: list[float]) -> EdgeFirst:
    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    return EdgeFirst(busy_rate=5, worker_rate=10, window=1.0, clock=clock, sleep=sleep)


def turns(edge: EdgeFirst, count: int) -> None:
    async def take() -> None:
        await asyncio.gather(*(edge.turn() for _ in range(count)))

    asyncio.run(take())


def test_quiet_intake_never_makes_the_worker_wait() -> None:
    clock, slept = Clock(), []
    edge = pace(clock, slept)
    for _ in range(5):  # 5 a second is the threshold, not past it
        edge.arrived()
        clock.now += 0.2
    turns(edge, 4)
    assert not edge.busy() and slept == []


def test_a_burst_spaces_the_workers_turns_in_order() -> None:
    clock, slept = Clock(), []
    edge = pace(clock, slept)
    for _ in range(6):
        edge.arrived()
    assert edge.busy()
    turns(edge, 4)
    # The first turn is free; the next ones are reserved a tenth of a second apart.
    assert slept == [0.1, 0.2, 0.3]


def test_the_pace_ends_with_the_burst() -> None:
    clock, slept = Clock(), []
    edge = pace(clock, slept)
    for _ in range(6):
        edge.arrived()
    turns(edge, 2)
    clock.now += 1.5  # nothing arrived for longer than the window
    turns(edge, 3)
    assert not edge.busy() and slept == [0.1]
