"""Figure 3: time from SMTP 250 to the ticket's card in the Slack emulator, at a steady 10 messages/s.

    .venv/bin/python bench/bench_latency.py                    # 300 messages at 10/s, 3 runs, both backends
    .venv/bin/python bench/bench_latency.py --messages 100 --runs 1 --backends sqlite

Each message is a plain customer mail whose subject carries a unique tag; two client processes
send them open loop at the given total rate (a new connection per message). The card of a ticket
is the first top-level post into the triage channel whose text or blocks carry its tag; the
emulator records when that request arrived (`time.monotonic()`, system-wide on Linux, the same
clock the clients stamp the 250 with). The emulator is not rate-limited here. As a second figure
the time from 250 to the acknowledgement reaching the mail sink is shown.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import mailgen
import smtpload
from benchlib import add_code_argument, percentile, print_machine, save_results, summarize
from stack import Stack


def tag_of(index: int) -> str:
    return f"[lat-{index:05d}]"


def one_run(backend: str, count: int, rate: float, seed: int) -> dict[str, Any]:
    messages = [mailgen.tagged_message(tag_of(i), seed * 100_000 + i) for i in range(count)]
    stack = Stack(backend).start()
    try:
        result = smtpload.send_all(stack.smtp_port, messages, clients=2, rate=rate)
        accepted = {s.index: s for s in result.accepted}
        stack.wait_until(lambda: stack.card_count() >= len(accepted), timeout=120)
        stack.wait_until(lambda: stack.acknowledgements() >= len(accepted), timeout=60)
        card_at: dict[int, float] = {}
        for call in stack.cards():
            text = json.dumps(call.params)
            start = text.find("[lat-")
            if start >= 0:
                card_at.setdefault(int(text[start + 5 : start + 10]), call.time)
        ack_at: dict[int, float] = {}
        for mail in list(stack.sink.messages):
            subject = str(mail.message["Subject"] or "")
            start = subject.find("[lat-")
            if start >= 0:
                ack_at.setdefault(int(subject[start + 5 : start + 10]), mail.received)
    finally:
        exit_code = stack.stop()
        stack.cleanup()
    to_card = [1000 * (card_at[i] - s.answered_at) for i, s in accepted.items() if i in card_at]
    to_ack = [1000 * (ack_at[i] - s.answered_at) for i, s in accepted.items() if i in ack_at]
    return {
        "sent": count,
        "accepted": len(accepted),
        "offered_rate": rate,
        "achieved_rate": result.rate,
        "cards_matched": len(to_card),
        "acks_matched": len(to_ack),
        "card_p50_ms": percentile(to_card, 50),
        "card_p99_ms": percentile(to_card, 99),
        "card_max_ms": max(to_card, default=float("nan")),
        "ack_p50_ms": percentile(to_ack, 50),
        "ack_p99_ms": percentile(to_ack, 99),
        "smtp_p99_ms": percentile(result.latencies_ms(), 99),
        "exit_code": exit_code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Figure 3: SMTP 250 to the card in Slack at a steady rate.")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second, all clients together")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    add_code_argument(parser)
    args = parser.parse_args()
    machine = print_machine()
    backends = args.backends.split(",")
    runs: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
    for run in range(args.runs):
        for backend in backends:  # interleaved, so drifts in machine speed hit both alike
            result = one_run(backend, args.messages, args.rate, seed=run + 1)
            runs[backend].append(result)
            print(
                f"[run {run + 1}] {backend}: {result['cards_matched']}/{result['accepted']} cards, "
                f"250->card p50 {result['card_p50_ms']:.0f} ms p99 {result['card_p99_ms']:.0f} ms "
                f"(max {result['card_max_ms']:.0f}); 250->ack p50 {result['ack_p50_ms']:.0f} ms; "
                f"sent at {result['achieved_rate']:.1f}/s; exit {result['exit_code']}",
                flush=True,
            )
    print(
        f"\nFigure 3: SMTP 250 -> card in the emulator at {args.rate:g} messages/s ({args.messages} per run)"
    )
    for backend, results in runs.items():
        for label, key, goal in (
            ("250 -> card p50", "card_p50_ms", " (goal < 100 ms)"),
            ("250 -> card p99", "card_p99_ms", " (goal < 500 ms)"),
            ("250 -> acknowledgement p50", "ack_p50_ms", ""),
        ):
            print(f"  {backend}: {label:<28} {summarize([r[key] for r in results]).text(' ms', 0)}{goal}")
    save_results("latency", {"machine": machine, "args": vars(args), "runs": runs})


if __name__ == "__main__":
    main()
