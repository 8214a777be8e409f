"""Figure 8: resident memory of `servicedesk serve` while 20,000 emails flow through it.

    .venv/bin/python bench/bench_memory.py                     # 20,000 emails, 2 runs, SQLite
    .venv/bin/python bench/bench_memory.py --messages 4000 --runs 1 --backend postgresql

The peer generator's mix is sent by 8 clients (a new connection per message), in chunks so the
intake never runs far ahead of the worker (at most `--ahead` tickets without a card): the service
then holds a steady amount of work and any growth of its memory is growth with the count. The
service's VmRSS is sampled against the number of tickets whose card reached the emulator; the
figure is RSS at a fifth, half and all of the flow, the slope over the second half (KiB per 1,000
emails) and the peak (VmHWM). The mail sink is emptied as it goes, so the bench's own memory
stays bounded too.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import mailgen
import smtpload
from benchlib import add_code_argument, print_machine, proc_status_kib, save_results, summarize
from stack import Stack


class Sampler(threading.Thread):
    """(cards so far, VmRSS KiB) every `interval` seconds, until stopped."""

    def __init__(self, stack: Stack, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.stack, self.interval = stack, interval
        self.samples: list[tuple[int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                self.samples.append((self.stack.card_count(), proc_status_kib(self.stack.pid, "VmRSS")))
            except OSError:
                return
            self.stack.sink.clear()  # only the count of cards matters here

    def rss_at(self, cards: int) -> float:
        """Median RSS of the samples taken around the moment `cards` cards had been posted."""
        near = [rss for count, rss in self.samples if abs(count - cards) <= max(50, cards // 50)]
        return summarize(near).median if near else float("nan")


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    pool, _ = mailgen.customer_mix(args.pool)
    stack = Stack(args.backend).start()
    sampler = Sampler(stack)
    sampler.start()
    started = time.monotonic()
    try:
        sent = 0
        while sent < args.messages and time.monotonic() - started < args.timeout:
            chunk = min(args.chunk, args.messages - sent)
            # New Message-IDs each time round the pool: a re-sent Message-ID would be a duplicate.
            messages = [_fresh(pool[(sent + i) % len(pool)], sent + i) for i in range(chunk)]
            smtpload.send_all(stack.smtp_port, messages, clients=args.clients)
            sent += chunk
            stack.wait_for_cards(sent - args.ahead, args.timeout)
        stack.wait_for_cards(sent, args.timeout)
        time.sleep(1)
    finally:
        sampler.done.set()
        sampler.join()
        peak = proc_status_kib(stack.pid, "VmHWM")
        exit_code = stack.stop()
        stack.cleanup()
    cards = sampler.samples[-1][0] if sampler.samples else 0
    fifth, half, full = (sampler.rss_at(int(cards * f)) for f in (0.2, 0.5, 1.0))
    return {
        "sent": sent,
        "cards": cards,
        "rss_kib_at_fifth": fifth,
        "rss_kib_at_half": half,
        "rss_kib_at_end": full,
        "slope_kib_per_1000": (full - half) / (cards / 2) * 1000 if cards else float("nan"),
        "peak_kib": peak,
        "seconds": time.monotonic() - started,
        "exit_code": exit_code,
        "samples": sampler.samples[:: max(1, len(sampler.samples) // 200)],
    }


def _fresh(raw: bytes, index: int) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"message-id:")]
    lines.append(f"Message-ID: <mem-{index:07d}-{time.time_ns()}@bench.example>".encode())
    return b"\r\n".join(lines) + sep + body


def main() -> None:
    parser = argparse.ArgumentParser(description="Figure 8: RSS of servicedesk serve while emails flow.")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=500, help="messages sent between checks on the worker")
    parser.add_argument("--ahead", type=int, default=1000, help="most tickets waiting for their card")
    parser.add_argument("--pool", type=int, default=2000, help="distinct generated messages, reused")
    parser.add_argument("--timeout", type=float, default=3600.0, help="bound on the whole run, seconds")
    add_code_argument(parser)
    args = parser.parse_args()
    machine = print_machine()
    runs = []
    for run in range(args.runs):
        result = one_run(args)
        runs.append(result)
        print(
            f"[run {run + 1}] {result['cards']} tickets in {result['seconds']:.0f} s; RSS "
            f"{result['rss_kib_at_fifth'] / 1024:.0f} MiB at 1/5, {result['rss_kib_at_half'] / 1024:.0f} MiB "
            f"at 1/2, {result['rss_kib_at_end'] / 1024:.0f} MiB at the end; peak "
            f"{result['peak_kib'] / 1024:.0f} MiB; slope {result['slope_kib_per_1000']:.0f} KiB per 1,000; "
            f"exit {result['exit_code']}",
            flush=True,
        )
    print(f"\nFigure 8: servicedesk serve RSS while {args.messages:,} emails flow ({args.backend})")
    for label, key in (
        ("at a fifth", "rss_kib_at_fifth"),
        ("at half", "rss_kib_at_half"),
        ("at the end", "rss_kib_at_end"),
        ("peak", "peak_kib"),
    ):
        print(f"  RSS {label:<12} {summarize([r[key] / 1024 for r in runs]).text(' MiB', 0)}")
    slope = summarize([r["slope_kib_per_1000"] for r in runs])
    print(f"  growth over the second half  {slope.text(' KiB per 1,000 emails', 0)}")
    save_results("memory", {"machine": machine, "args": vars(args), "runs": runs})


if __name__ == "__main__":
    main()
