"""Figure 1 alone, for two or more commits side by side: what one change bought, in one run.

    .venv/bin/python bench/ab_intake.py 83811d9 HEAD                      # SQLite, 2 rounds
    .venv/bin/python bench/ab_intake.py 3c7c3d7 HEAD --backend postgresql --rounds 3

Each round measures the bare aiosmtpd limit, then each commit's `servicedesk serve` (a `git archive`
of its product packages first on PYTHONPATH, a fresh store each time) under the same 2,000 messages
and 8 clients as `bench_intake.py`, one after the other: the commits see the same minute of a noisy
machine, which separate `--code` runs an hour apart do not. It stops at the last 250 (no end-to-end
phase), so a round takes a minute or two. Prints each commit's share of the bare limit, its DATA ->
250 p99 and the service's CPU per message while the clients send.
"""

from __future__ import annotations

import argparse

import mailgen
import smtpload
from benchlib import (
    committed_code,
    free_port,
    percentile,
    print_machine,
    proc_cpu_seconds,
    summarize,
)
from stack import Stack


def main() -> None:
    parser = argparse.ArgumentParser(description="Figure 1 for several commits, interleaved.")
    parser.add_argument("refs", nargs="+", help="commits to compare (e.g. 83811d9 HEAD)")
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    print_machine()
    messages, source = mailgen.customer_mix(args.messages)
    print(f"{len(messages)} messages from the {source}, {args.clients} clients, {args.backend}")
    products = [committed_code(ref) for ref in args.refs]
    shares: dict[str, list[float]] = {sha: [] for sha, _ in products}
    p99s: dict[str, list[float]] = {sha: [] for sha, _ in products}
    cpus: dict[str, list[float]] = {sha: [] for sha, _ in products}
    for round_number in range(1, args.rounds + 1):
        port = free_port()
        server = smtpload.start_count_only(port)
        try:
            bare = smtpload.send_all(port, messages, clients=args.clients).rate
        finally:
            smtpload.stop(server)
        print(f"[round {round_number}] bare aiosmtpd: {bare:.0f} msg/s", flush=True)
        for sha, code in products:
            stack = Stack(args.backend, env={"PYTHONPATH": str(code)}).start()
            try:
                cpu_before = proc_cpu_seconds(stack.pid)
                result = smtpload.send_all(stack.smtp_port, messages, clients=args.clients)
                cpu = 1000 * (proc_cpu_seconds(stack.pid) - cpu_before) / len(messages)
            finally:
                stack.stop()
                stack.cleanup()
            p99 = percentile(result.latencies_ms(), 99)
            shares[sha].append(100 * result.rate / bare)
            p99s[sha].append(p99)
            cpus[sha].append(cpu)
            print(
                f"[round {round_number}] {sha}: {result.rate:.0f} msg/s = {100 * result.rate / bare:.1f} % "
                f"of bare, p99 {p99:.1f} ms, {cpu:.2f} ms CPU per message, "
                f"{len(result.accepted)}/{len(messages)} accepted",
                flush=True,
            )
    print(f"\nFigure 1 by commit, {args.backend} (median of {args.rounds} rounds, min–max)")
    for sha, _ in products:
        print(
            f"  {sha}: share {summarize(shares[sha]).text(' %')}, p99 {summarize(p99s[sha]).text(' ms')}, "
            f"CPU per message {summarize(cpus[sha]).text(' ms', 2)}"
        )


if __name__ == "__main__":
    main()
