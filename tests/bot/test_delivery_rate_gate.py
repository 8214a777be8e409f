"""The rate gate on a hand-moved clock: Slack's pacing per channel and per method, 429 blocks, and
a backlog deferred in spread-out slots instead of all at once."""

from __future__ import annotations

from bot.delivery.rate_gate import MARGIN, Admitted, Deferred, RateGate
from sandbox.ratelimit import ManualClock

POST = "chat.postMessage"


def gate(clock: ManualClock, **kwargs: object) -> RateGate:
    return RateGate(clock=clock, **kwargs)  # type: ignore[arg-type]


def test_posts_to_one_channel_burst_then_one_per_second() -> None:
    clock = ManualClock()
    rate_gate = gate(clock)
    waits = [rate_gate.admit(POST, "C1") for _ in range(6)]
    assert all(isinstance(w, Admitted) for w in waits)
    assert [round(w.wait, 3) for w in waits if isinstance(w, Admitted)] == [0, 0, 0, 1.05, 2.1, 3.15]


def test_two_workers_each_keep_half_of_a_channels_limit() -> None:
    clock = ManualClock()
    rate_gate = gate(clock)
    rate_gate.share_among(2)
    waits = [rate_gate.admit(POST, "C1") for _ in range(3)]
    # A burst of one (3 // 2), then one every 2.1 s: with the other worker's, one a second.
    assert [round(w.wait, 3) for w in waits if isinstance(w, Admitted)] == [0, 2.1, 4.2]
    # A schedule made before the count changed follows it too; alone again, the whole limit.
    rate_gate.share_among(1)
    clock.advance(20)
    assert [rate_gate.admit(POST, "C1") for _ in range(3)] == [Admitted(wait=0)] * 3


def test_a_busy_channel_does_not_slow_another_channel() -> None:
    clock = ManualClock()
    rate_gate = gate(clock)
    for _ in range(5):
        rate_gate.admit(POST, "C1")
    other = rate_gate.admit(POST, "C2")
    assert isinstance(other, Admitted) and other.wait == 0


def test_a_backlog_beyond_the_horizon_is_deferred_in_spread_slots() -> None:
    clock = ManualClock()
    rate_gate = gate(clock, horizon=5.0)
    decisions = [rate_gate.admit(POST, "C1") for _ in range(20)]
    admitted = [d for d in decisions if isinstance(d, Admitted)]
    deferred = [d for d in decisions if isinstance(d, Deferred)]
    assert len(admitted) == 7  # a burst of 3, then four more within the 5 s horizon
    delays = [d.delay for d in deferred]
    # One slot a second each (plus jitter): they come back one by one, not as a herd.
    assert delays == sorted(delays) and delays[-1] - delays[0] >= MARGIN * (len(delays) - 2)
    assert all("C1" in d.reason for d in deferred)


def test_a_429_blocks_its_channel_only_for_posts_and_its_method_otherwise() -> None:
    clock = ManualClock()
    rate_gate = gate(clock, horizon=5.0)
    rate_gate.blocked(POST, "C1", 30)
    assert isinstance(rate_gate.admit(POST, "C1"), Deferred)
    assert rate_gate.admit(POST, "C2") == Admitted(wait=0)
    assert rate_gate.admit("chat.update", None) == Admitted(wait=0)
    rate_gate.blocked("chat.update", "C2", 10)
    assert isinstance(rate_gate.admit("chat.update", None), Deferred)
    assert rate_gate.admit("reactions.add", None) == Admitted(wait=0)
    clock.advance(31)
    assert rate_gate.admit(POST, "C1") == Admitted(wait=0)


def test_a_short_429_is_waited_out_in_process() -> None:
    clock = ManualClock()
    rate_gate = gate(clock, horizon=5.0)
    rate_gate.blocked(POST, "C1", 1)
    decision = rate_gate.admit(POST, "C1")
    assert isinstance(decision, Admitted) and decision.wait == 1
    assert rate_gate.blocked_for(POST, "C1") == 1


def test_methods_are_paced_by_their_tier() -> None:
    clock = ManualClock()
    rate_gate = gate(clock, horizon=100.0)
    # reactions.remove is tier 2 (20 a minute): two back to back, then one every 3 s (and a margin).
    waits = [rate_gate.admit("reactions.remove", None) for _ in range(4)]
    assert [round(w.wait, 3) for w in waits if isinstance(w, Admitted)] == [0, 0, 3.15, 6.3]


def test_the_workspace_cap_spreads_posts_across_channels() -> None:
    clock = ManualClock()
    rate_gate = gate(clock, horizon=1000.0)
    waits = [rate_gate.admit(POST, f"C{n}") for n in range(310)]
    # 300 a minute: after a minute's allowance at once, one every 0.2 s (and a margin), whatever
    # the channel.
    assert [round(w.wait, 3) for w in waits if isinstance(w, Admitted)][299:302] == [0, 0.21, 0.42]


def test_without_pacing_only_429s_hold_calls_back() -> None:
    clock = ManualClock()
    rate_gate = gate(clock, pacing=False)
    assert all(rate_gate.admit(POST, "C1") == Admitted(wait=0) for _ in range(50))
    rate_gate.blocked(POST, "C1", 2)
    assert rate_gate.admit(POST, "C1") == Admitted(wait=2)


def test_unpaced_a_key_slack_refused_is_paced_from_then_on() -> None:
    clock = ManualClock()
    rate_gate = gate(clock, pacing=False)
    rate_gate.blocked(POST, "C1", 1)
    waits = [rate_gate.admit(POST, "C1") for _ in range(3)]
    # Slack's allowance is spent: one call when the block ends, then one a second (and a margin).
    assert [round(w.wait, 3) for w in waits if isinstance(w, Admitted)] == [1, 2.05, 3.1]
    assert all(rate_gate.admit(POST, "C2") == Admitted(wait=0) for _ in range(10))  # still unpaced


def test_a_429_spends_the_burst() -> None:
    clock = ManualClock()
    rate_gate = gate(clock)
    rate_gate.blocked(POST, "C1", 2)
    waits = [rate_gate.admit(POST, "C1") for _ in range(2)]
    assert [round(w.wait, 3) for w in waits if isinstance(w, Admitted)] == [2, 3.05]
