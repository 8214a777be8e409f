"""Figure 5: signed message events into /slack/events at rising rates: ack latency until p99 > 1 s.

    .venv/bin/python bench/bench_events.py                      # 25..800 events/s, 5 s a step, 3 runs
    .venv/bin/python bench/bench_events.py --rates 50,200 --seconds 3 --runs 1

The events are real ones: dan (Slack Connect) posts top-level messages in the intake channel of
the emulator while its delivery is switched off, and the envelopes the emulator would have sent
are replayed by a separate load process, signed at send time with Slack's v0 scheme, open loop
at a fixed rate per step (a late request is sent late, not skipped; lateness is reported). Each
is worth storing (a new ticket), so the service's worker turns them into tickets and posts while
the next events arrive, as it would under a flood. Latency is from the request leaving the load
process to its HTTP answer. The steps stop after two in a row with p99 over 1 s. Between steps
the service is given up to `--drain` seconds to work off its backlog, so each step starts from a
quiet service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
from typing import Any

import aiohttp
from benchlib import add_code_argument, percentile, print_machine, save_results, summarize
from stack import Stack

from sandbox.sender import signature_for
from sandbox.workspace import CONNECT, DAN


def _load(url: str, secret: str, bodies: list[bytes], rate: float, out: Any) -> None:
    """Runs in its own process: send every body at `rate` per second; put (latencies, statuses, lateness)."""

    async def run() -> tuple[list[float], list[int], list[float]]:
        latencies: list[float] = []
        statuses: list[int] = []
        lateness: list[float] = []
        connector = aiohttp.TCPConnector(limit=512)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def send(body: bytes) -> None:
                stamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    "X-Slack-Request-Timestamp": stamp,
                    "X-Slack-Signature": signature_for(secret, stamp, body),
                }
                started = time.monotonic()
                try:
                    async with session.post(url, data=body, headers=headers) as answer:
                        await answer.read()
                        statuses.append(answer.status)
                except (aiohttp.ClientError, TimeoutError):
                    statuses.append(0)
                latencies.append(time.monotonic() - started)

            loop = asyncio.get_running_loop()
            begin = loop.time() + 0.05
            tasks = []
            for i, body in enumerate(bodies):
                due = begin + i / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                lateness.append(max(0.0, loop.time() - due))
                tasks.append(asyncio.create_task(send(body)))
            await asyncio.gather(*tasks)
        return latencies, statuses, lateness

    out.put(asyncio.run(run()))


def replay(
    url: str, secret: str, bodies: list[bytes], rate: float
) -> tuple[list[float], list[int], list[float]]:
    ctx = mp.get_context("spawn")  # the bench process runs the emulator's threads: never fork them
    out = ctx.Queue()
    proc = ctx.Process(target=_load, args=(url, secret, bodies, rate, out))
    proc.start()
    result = out.get(timeout=len(bodies) / rate + 120)
    proc.join()
    return result


def envelopes(stack: Stack, count: int, run: int) -> list[bytes]:
    """Real envelopes for `count` customer posts, captured while delivery to the service is off."""
    stack.emulator.deliver_events_to(None)
    first = len(stack.emulator.events)
    for i in range(count):
        stack.emulator.user_post(DAN, CONNECT, f"Our dashboard shows no data since 9:00 (report {run}-{i})")
    captured = [e for e in stack.emulator.events[first:] if e.get("event", {}).get("user") == DAN]
    stack.emulator.deliver_events_to(stack.events_url)
    return [json.dumps(e).encode() for e in captured]


def one_run(args: argparse.Namespace, run: int) -> list[dict[str, Any]]:
    rates = [float(r) for r in args.rates.split(",")]
    stack = Stack(
        "sqlite" if args.backend == "sqlite" else "postgresql", env={"SERVICEDESK_INTAKE_CHANNELS": CONNECT}
    )
    stack.start()
    steps: list[dict[str, Any]] = []
    try:
        warmup = 20
        needed = warmup + sum(int(r * args.seconds) for r in rates)
        bodies = envelopes(stack, needed, run)
        # Not counted: the first requests warm the service up (imports, caches, connections).
        replay(stack.events_url, stack.workspace.signing_secret, bodies[:warmup], 10.0)
        stack.wait_for_cards(warmup, args.drain)
        offset = warmup
        for rate in rates:
            batch = bodies[offset : offset + int(rate * args.seconds)]
            offset += len(batch)
            started = time.monotonic()
            latencies, statuses, lateness = replay(
                stack.events_url, stack.workspace.signing_secret, batch, rate
            )
            wall = time.monotonic() - started
            ms = [1000 * x for x in latencies]
            drain_started = time.monotonic()
            drained = stack.wait_for_cards(offset, args.drain)
            step = {
                "rate": rate,
                "sent": len(batch),
                "ok": sum(1 for s in statuses if 200 <= s < 300),
                "not_ok": sum(1 for s in statuses if not 200 <= s < 300),
                "p50_ms": percentile(ms, 50),
                "p99_ms": percentile(ms, 99),
                "max_ms": max(ms, default=float("nan")),
                "late_p99_ms": 1000 * percentile(lateness, 99),
                "achieved_rate": len(batch) / wall if wall else 0.0,
                "drain_s": time.monotonic() - drain_started if drained else None,
            }
            steps.append(step)
            drain = f"{step['drain_s']:.1f} s" if drained else f"more than {args.drain:.0f} s"
            print(
                f"[run {run + 1}] {rate:>5.0f}/s: p50 {step['p50_ms']:.1f} ms, p99 {step['p99_ms']:.1f} ms, "
                f"max {step['max_ms']:.0f} ms, {step['not_ok']} not 2xx, load process late by "
                f"{step['late_p99_ms']:.0f} ms (p99); backlog worked off in "
                f"{drain}",
                flush=True,
            )
            # Past the knee: stop after two steps in a row over 1 s (one can be a hiccup of the machine).
            if len(steps) >= 2 and all(s["p99_ms"] > 1000 for s in steps[-2:]):
                break
    finally:
        stack.stop()
        stack.cleanup()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description="Figure 5: Slack event ack latency at rising rates.")
    parser.add_argument("--rates", default="25,50,100,200,400,800", help="events per second, one step each")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--drain", type=float, default=60.0, help="most seconds to wait for the backlog")
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    add_code_argument(parser)
    args = parser.parse_args()
    machine = print_machine()
    runs = [one_run(args, run) for run in range(args.runs)]
    print(
        f"\nFigure 5: signed message events into /slack/events ({args.backend}, {args.seconds:g} s per step)"
    )
    rates = sorted({step["rate"] for steps in runs for step in steps})
    for rate in rates:
        at = [step for steps in runs for step in steps if step["rate"] == rate]
        print(
            f"  {rate:>5.0f} events/s: p50 {summarize([s['p50_ms'] for s in at]).text(' ms')}, "
            f"p99 {summarize([s['p99_ms'] for s in at]).text(' ms')}, "
            f"not 2xx {sum(s['not_ok'] for s in at)}"
        )
    ceilings = [max((s["rate"] for s in steps if s["p99_ms"] <= 1000), default=0.0) for steps in runs]
    print(f"  highest step with p99 <= 1 s: {summarize(ceilings).text(' events/s', 0)}")
    save_results("events", {"machine": machine, "args": vars(args), "runs": runs})


if __name__ == "__main__":
    main()
