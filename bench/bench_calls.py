"""Figure 4: Slack Web API calls per new email ticket, per staff reply and per triage change.

    .venv/bin/python bench/bench_calls.py                 # 5 of each, 3 runs
    .venv/bin/python bench/bench_calls.py --each 3 --runs 1

Counted from the emulator's call log (every Web API request it received, whatever the answer),
after each step has settled: no new call for `--quiet` seconds. A first ticket, reply and command
warm the service up (auth.test, the staff list, profiles it caches) and are not counted. Steps:

- new email ticket: one customer mail through SMTP;
- staff reply: alice writes in the ticket's triage thread (delivered to the customer by email;
  SERVICEDESK_REPLY_DELAY_SECONDS=0 so it goes at once);
- triage change: `/desk priority <n> high` (a slash command), `!status pending` typed in the
  thread, and a note (`note: ...`) in the thread;
- new Slack ticket: dan posts in the Slack Connect intake channel.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import mailgen
import smtpload
from benchlib import add_code_argument, print_machine, save_results, summarize
from stack import Stack

from sandbox.workspace import ALICE, CONNECT, DAN, TRIAGE


def settle(stack: Stack, quiet: float, timeout: float = 60.0) -> None:
    """Wait until the emulator has seen no new call for `quiet` seconds (and deliveries are answered)."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(stack.emulator.state.calls)
        if count != seen:
            seen, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet and stack.emulator.pending == 0:
            return
        time.sleep(0.05)


class Counted:
    """Calls made between enter and exit, by method."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.methods: Counter[str] = Counter()

    def __enter__(self) -> Counted:
        self.start = len(self.stack.emulator.state.calls)
        return self

    def __exit__(self, *exc: object) -> None:
        self.methods = Counter(c.method for c in self.stack.emulator.calls[self.start :])


def send_mail(stack: Stack, tag: str, seed: int) -> None:
    result = smtpload.send_all(stack.smtp_port, [mailgen.tagged_message(tag, seed)], clients=1)
    assert result.accepted, result.errors


def card_ts(stack: Stack, tag: str) -> str:
    for call in reversed(stack.cards()):
        if tag in str(call.params):
            for message in stack.emulator.messages(TRIAGE):
                if tag in (message.text or "") or tag in str(message.blocks):
                    return message.ts
    raise LookupError(f"no card carries {tag}")


def ticket_number(stack: Stack, ts: str) -> int:
    text = stack.emulator.message(TRIAGE, ts).text or ""
    digits = text[text.index("#") + 1 :].split()[0].rstrip(":,.")
    return int("".join(ch for ch in digits if ch.isdigit()))


def one_run(each: int, quiet: float, run: int) -> dict[str, Counter[str]]:
    stack = Stack(
        "sqlite", env={"SERVICEDESK_REPLY_DELAY_SECONDS": "0", "SERVICEDESK_INTAKE_CHANNELS": CONNECT}
    ).start()
    steps: dict[str, Counter[str]] = {}

    def count(step: str, action: Any) -> None:
        with Counted(stack) as counted:
            action()
            settle(stack, quiet)
        steps.setdefault(step, Counter()).update(counted.methods)

    try:
        # Warm-up, not counted: the first ticket, reply and command.
        send_mail(stack, "[warm]", run * 1000)
        settle(stack, quiet)
        warm = card_ts(stack, "[warm]")
        stack.emulator.user_post(ALICE, TRIAGE, "Looking into it.", thread_ts=warm)
        settle(stack, quiet)
        stack.emulator.user_command(ALICE, TRIAGE, "/desk", f"priority {ticket_number(stack, warm)} low")
        settle(stack, quiet)
        tickets = []
        for i in range(each):
            tag = f"[calls-{run}-{i}]"
            count("new email ticket", lambda tag=tag, i=i: send_mail(stack, tag, run * 1000 + i + 1))
            tickets.append(card_ts(stack, tag))
        for ts in tickets:
            count(
                "staff reply (by email)",
                lambda ts=ts: stack.emulator.user_post(
                    ALICE, TRIAGE, "Thanks, a fix is on its way.", thread_ts=ts
                ),
            )
        for ts in tickets:
            number = ticket_number(stack, ts)
            count(
                "triage: /desk priority",
                lambda n=number: stack.emulator.user_command(ALICE, TRIAGE, "/desk", f"priority {n} high"),
            )
            count(
                "triage: !status in thread",
                lambda ts=ts: stack.emulator.user_post(ALICE, TRIAGE, "!status pending", thread_ts=ts),
            )
            count(
                "note in thread",
                lambda ts=ts: stack.emulator.user_post(
                    ALICE, TRIAGE, "note: customer is on the old plan", thread_ts=ts
                ),
            )
        for i in range(each):
            count(
                "new Slack Connect ticket",
                lambda i=i: stack.emulator.user_post(DAN, CONNECT, f"The dashboard is down ({run}-{i})"),
            )
    finally:
        stack.stop()
        stack.cleanup()
    return {step: Counter({m: n / each for m, n in methods.items()}) for step, methods in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Figure 4: Slack API calls per ticket, reply and triage change."
    )
    parser.add_argument("--each", type=int, default=5, help="how many of each step per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quiet", type=float, default=1.5, help="seconds without a call that end a step")
    add_code_argument(parser)
    args = parser.parse_args()
    machine = print_machine()
    runs = [one_run(args.each, args.quiet, run) for run in range(args.runs)]
    print(
        f"\nFigure 4: Slack Web API calls per step ({args.each} of each per run; median of {args.runs} runs)"
    )
    table: dict[str, Any] = {}
    for step in runs[0]:
        totals = [sum(r.get(step, Counter()).values()) for r in runs]
        methods = sorted({m for r in runs for m in r.get(step, {})})
        detail = ", ".join(
            f"{m} {summarize([r.get(step, Counter())[m] for r in runs]).median:g}" for m in methods
        )
        print(f"  {step:<28} {summarize(totals).text('', 1)}: {detail}")
        table[step] = {
            "total": summarize(totals).as_dict(),
            "by_method": {m: [r[step][m] for r in runs] for m in methods},
        }
    save_results("calls", {"machine": machine, "args": vars(args), "steps": table})


if __name__ == "__main__":
    main()
