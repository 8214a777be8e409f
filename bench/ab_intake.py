"""Figure 1 (or our side of figure 2) for two or more commits side by side: what one change bought.

    .venv/bin/python bench/ab_intake.py 83811d9 HEAD                      # SQLite, 2 rounds
    .venv/bin/python bench/ab_intake.py 3c7c3d7 HEAD --backend postgresql --rounds 3
    .venv/bin/python bench/ab_intake.py 760f4ab HEAD --end-to-end --messages 1000

Each round measures the bare aiosmtpd limit, then each commit's `servicedesk serve` (a `git archive`
of its product packages first on PYTHONPATH, a fresh store each time) under the same 2,000 messages
and 8 clients as `bench_intake.py`, one after the other: the commits see the same minute of a noisy
machine, which separate `--code` runs an hour apart do not. It stops at the last 250 (no end-to-end
phase), so a round takes a minute or two. Prints each commit's share of the bare limit, its DATA ->
250 p99 and the service's CPU per message while the clients send.

With `--end-to-end` each commit's round also waits for every card and acknowledgement, as
`bench_intake.py` does for figure 2, and prints tickets/s end to end, the service's CPU per ticket
and, on PostgreSQL, the database commits per ticket (no peer: its ratio is taken by `bench_intake.py`).
`--extra-workers N` runs N `serve --role worker` processes beside each service, on its store (the
design's scale-out) for every commit of the run; CPU per ticket then counts every service process.
What an extra worker buys is the same commits run once without the option and once with it.
"""

from __future__ import annotations

import argparse
from typing import Any

import mailgen
import smtpload
from bench_intake import end_to_end, pg_counters
from benchlib import (
    committed_code,
    free_port,
    percentile,
    print_machine,
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
    parser.add_argument(
        "--end-to-end", action="store_true", help="also wait for every card and acknowledgement (figure 2)"
    )
    parser.add_argument("--e2e-timeout", type=float, default=600.0, help="seconds to wait for them")
    parser.add_argument(
        "--extra-workers",
        type=int,
        default=0,
        help="run this many `serve --role worker` processes beside each service (scale-out)",
    )
    args = parser.parse_args()
    print_machine()
    messages, source = mailgen.customer_mix(args.messages)
    workers = f", {args.extra_workers} extra worker process(es)" if args.extra_workers else ""
    print(f"{len(messages)} messages from the {source}, {args.clients} clients, {args.backend}{workers}")
    products = [committed_code(ref) for ref in args.refs]
    shares: dict[str, list[float]] = {sha: [] for sha, _ in products}
    p99s: dict[str, list[float]] = {sha: [] for sha, _ in products}
    cpus: dict[str, list[float]] = {sha: [] for sha, _ in products}
    e2e: dict[str, list[dict[str, Any]]] = {sha: [] for sha, _ in products}
    for round_number in range(1, args.rounds + 1):
        port = free_port()
        server = smtpload.start_count_only(port)
        try:
            bare = smtpload.send_all(port, messages, clients=args.clients).rate
        finally:
            smtpload.stop(server)
        print(f"[round {round_number}] bare aiosmtpd: {bare:.0f} msg/s", flush=True)
        for sha, code in products:
            stack = Stack(
                args.backend, env={"PYTHONPATH": str(code)}, extra_workers=args.extra_workers
            ).start()
            try:
                counters_before = pg_counters(stack) if args.end_to_end else {}
                cpu_before = stack.cpu_seconds()
                result = smtpload.send_all(stack.smtp_port, messages, clients=args.clients)
                cpu = 1000 * (stack.cpu_seconds() - cpu_before) / len(messages)
                if args.end_to_end:
                    figures = end_to_end(
                        stack,
                        result,
                        cpu_before=cpu_before,
                        counters_before=counters_before,
                        timeout=args.e2e_timeout,
                    )
                    e2e[sha].append(figures)
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
            if args.end_to_end:
                print(f"[round {round_number}] {sha}: {describe_end_to_end(figures)}", flush=True)
    print(f"\nFigure 1 by commit, {args.backend} (median of {args.rounds} rounds, min–max)")
    for sha, _ in products:
        print(
            f"  {sha}: share {summarize(shares[sha]).text(' %')}, p99 {summarize(p99s[sha]).text(' ms')}, "
            f"CPU per message {summarize(cpus[sha]).text(' ms', 2)}"
        )
    if args.end_to_end:
        print(f"\nEnd to end by commit, {args.backend} (median of {args.rounds} rounds, min–max)")
        for sha, _ in products:
            runs = e2e[sha]
            line = (
                f"  {sha}: {summarize([r['e2e_msgs_per_s'] for r in runs]).text(' tickets/s')}, "
                f"CPU per ticket {summarize([r['server_cpu_ms_per_msg_total'] for r in runs]).text(' ms')}"
            )
            if args.backend == "postgresql":
                commits = [r["pg_per_ticket"].get("commits", float("nan")) for r in runs]
                line += f", commits per ticket {summarize(commits).text('')}"
            print(line)


def describe_end_to_end(figures: dict[str, Any]) -> str:
    text = (
        f"end to end {figures['e2e_msgs_per_s']:.1f} tickets/s, "
        f"{figures['server_cpu_ms_per_msg_total']:.1f} ms CPU per ticket, "
        f"{figures['cards']} cards, {figures['acknowledgements']} acks"
    )
    if "commits" in figures["pg_per_ticket"]:
        text += f", {figures['pg_per_ticket']['commits']:.1f} commits per ticket"
    return text + ("" if figures["complete"] else ", INCOMPLETE")


if __name__ == "__main__":
    main()
