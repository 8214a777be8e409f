"""Figure 6: 600 posts across 10 channels against Slack-like rate limits, vs the fastest they allow.

    .venv/bin/python bench/bench_ratelimits.py                 # 600 posts, 10 channels, 3 runs
    .venv/bin/python bench/bench_ratelimits.py --posts 120 --channels 4 --runs 1

The emulator enforces DESIGN.md's limits: `chat.postMessage` 1 per second per channel with a burst
of 3, and 300 a minute for the workspace (a bucket that starts full), 429 with Retry-After beyond.

The work is made by the product's own actions before the worker starts: in each channel one
ticket (its card) and the desk lines of its thread (`thread_line`), 60 posts per channel. Then
`servicedesk serve --role worker` delivers them. The figure is the time from the first post to
the last, against the least time the two buckets allow (computed below by simulating them), with
checks that every post arrived exactly once and that no row failed after a 429.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from typing import Any

from benchlib import add_code_argument, print_machine, save_results, summarize
from stack import Stack

from sandbox.workspace import ALICE, BOT_USER, default_workspace
from store.actions import DESK, customer_for_email, open_ticket
from store.actions.common import thread_line
from store.context import policy_from_settings
from store.db import Database
from store.migrate import upgrade
from store.models import Origin, Outbox
from store.settings import Settings

CHANNEL_RATE = 1.0  # posts per second per channel
CHANNEL_BURST = 3
WORKSPACE_PER_MINUTE = 300


class Bucket:
    """A token bucket that starts full, as the emulator's do."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate, self.tokens, self.at = capacity, rate, capacity, 0.0

    def ready(self, now: float) -> float:
        tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        return now if tokens >= 1 else now + (1 - tokens) / self.rate

    def take(self, at: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (at - self.at) * self.rate) - 1
        self.at = at


def fastest_schedule(per_channel: list[int]) -> float:
    """Seconds from the first post to the last that the buckets allow.

    Greedy: always make the post that can go earliest; with identical channels this is optimal.
    """
    workspace = Bucket(WORKSPACE_PER_MINUTE, WORKSPACE_PER_MINUTE / 60.0)
    channels = [(Bucket(CHANNEL_BURST, CHANNEL_RATE), [n]) for n in per_channel]
    now = 0.0
    while True:
        waiting = [(bucket, left) for bucket, left in channels if left[0]]
        if not waiting:
            return now
        bucket, left = min(waiting, key=lambda pair: pair[0].ready(now))
        now = max(bucket.ready(now), workspace.ready(now))
        bucket.take(now)
        workspace.take(now)
        left[0] -= 1


def bench_channels(count: int) -> list[str]:
    return [f"C0BENCH{i:02d}" for i in range(count)]


def make_work(channels: list[str], per_channel: int) -> Any:
    def prepare(database_url: str) -> None:
        db = Database(database_url)
        upgrade(db)
        policy = policy_from_settings(Settings(support_address="support@helpdesk.example"))
        with db.transaction() as session:
            for index, channel in enumerate(channels):
                customer = customer_for_email(session, f"customer{index}@example.com", f"Customer {index}")
                ticket = open_ticket(
                    session,
                    replace(policy, triage_channel=channel),
                    subject=f"Printer {index} is on fire",
                    requester=customer,
                    origin=Origin.EMAIL,
                    actor=DESK,
                )
                for line in range(per_channel - 1):  # the card is the channel's first post
                    thread_line(session, ticket, f"Status line {line + 1} of ticket {index}")
        db.dispose()

    return prepare


def failed_rows(database_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    db = Database(database_url)
    try:
        with db.transaction() as session:
            return {
                state: n
                for state, n in session.execute(select(Outbox.state, func.count()).group_by(Outbox.state))
            }
    finally:
        db.dispose()


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    channels = bench_channels(args.channels)
    per_channel = args.posts // args.channels
    workspace = default_workspace()
    for channel in channels:
        workspace.add_channel(channel, channel.lower(), [ALICE, BOT_USER])
    stack = Stack(
        args.backend,
        workspace=workspace,
        rate_limits=True,
        serve_args=["--role", "worker"],
        prepare=make_work(channels, per_channel),
    )
    stack.start()
    expected = per_channel * len(channels)
    try:

        def posted() -> int:
            with stack.emulator.state.lock:
                return sum(
                    1
                    for c in stack.emulator.state.calls
                    if c.method == "chat.postMessage" and c.ok and c.channel in channels
                )

        complete = stack.wait_until(lambda: posted() >= expected, args.timeout)
        # The last rows are marked done just after their post: let the worker settle them.
        stack.wait_until(lambda: set(failed_rows(stack.database_url)) <= {"done", "failed"}, 30)
        posts = [c for c in stack.emulator.calls if c.method == "chat.postMessage" and c.channel in channels]
        ok = [c for c in posts if c.ok]
        limited = [c for c in posts if c.status == 429]
        states = failed_rows(stack.database_url)
        marks = Counter(_mark(c.params) for c in ok)
        per_channel_ok = Counter(c.channel for c in ok)
        elapsed = max(c.time for c in ok) - min(c.time for c in ok) if ok else float("nan")
        others = Counter(c.method for c in stack.emulator.calls if c.method != "chat.postMessage")
    finally:
        exit_code = stack.stop()
        stack.cleanup()
    fastest = fastest_schedule([per_channel] * len(channels))
    return {
        "complete": complete,
        "posted": len(ok),
        "expected": expected,
        "elapsed_s": elapsed,
        "fastest_s": fastest,
        "ratio": elapsed / fastest,
        "duplicates": sum(n - 1 for n in marks.values() if n > 1),
        "channels_short": {
            ch: expected // len(channels) - per_channel_ok[ch]
            for ch in channels
            if per_channel_ok[ch] != per_channel
        },
        "answered_429": len(limited),
        "outbox_states": states,
        "other_calls": dict(others),
        "exit_code": exit_code,
    }


def _mark(params: dict[str, Any]) -> str:
    """A post's delivery metadata (outbox row and part): two posts with one mark are a double post."""
    metadata = params.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return metadata
    return json.dumps(metadata, sort_keys=True) if metadata else f"no-metadata:{params.get('text')}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Figure 6: posts across channels under Slack-like rate limits."
    )
    parser.add_argument("--posts", type=int, default=600)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for every post")
    add_code_argument(parser)
    args = parser.parse_args()
    machine = print_machine()
    runs = []
    for run in range(args.runs):
        result = one_run(args)
        runs.append(result)
        print(
            f"[run {run + 1}] {result['posted']}/{result['expected']} posts in {result['elapsed_s']:.1f} s "
            f"(fastest allowed {result['fastest_s']:.1f} s, {result['ratio']:.2f}x); "
            f"{result['answered_429']} answered 429, {result['duplicates']} double posts, "
            f"outbox {result['outbox_states']}, other calls {result['other_calls']}, "
            f"exit {result['exit_code']}",
            flush=True,
        )
    print(
        f"\nFigure 6: {args.posts} posts across {args.channels} channels, Slack-like limits ({args.backend})"
    )
    print(f"  time to deliver all         {summarize([r['elapsed_s'] for r in runs]).text(' s')}")
    print(f"  fastest the limits allow    {runs[0]['fastest_s']:.1f} s")
    print(f"  ratio (goal <= 1.1x)        {summarize([r['ratio'] for r in runs]).text('x', 2)}")
    print(f"  429 answers                 {summarize([r['answered_429'] for r in runs]).text('', 0)}")
    print(f"  double posts (goal 0)       {sum(r['duplicates'] for r in runs)}")
    print(f"  runs with posts missing     {sum(1 for r in runs if not r['complete'])}")
    save_results("ratelimits", {"machine": machine, "args": vars(args), "runs": runs})


if __name__ == "__main__":
    main()
