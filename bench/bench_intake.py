"""Figures 1 and 2: email intake through real SMTP, against the bare aiosmtpd limit and the peer.

    .venv/bin/python bench/bench_intake.py            # 2,000 messages, 3 runs: SQLite, PostgreSQL, peer
    .venv/bin/python bench/bench_intake.py --runs 1 --backends sqlite --no-peer

Per run, in this order, with the same 2,000 messages (the peer generator's mix) and the same
clients (8 processes, a new connection per message):

1. the bare limit: aiosmtpd with a handler that only counts, in its own process;
2. `servicedesk serve` on a fresh SQLite file, then on a fresh PostgreSQL database: messages/s
   and DATA -> 250 latency while sending, then the end-to-end rate — messages until every
   ticket's card is in the Slack emulator and every acknowledgement is in the mail sink;
3. the peer, django-helpdesk's `get_email`, on the same messages (figure 2).

Ratios are taken within a run (ours / bare, ours end-to-end / peer) and then summarised, because
the machine is shared and its speed drifts between minutes.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import mailgen
import peer
import psycopg
import smtpload
from benchlib import (
    add_code_argument,
    free_port,
    percentile,
    print_machine,
    proc_cpu_seconds,
    save_results,
    summarize,
)
from stack import PG_ADMIN_URL, PG_DATABASE, Stack


def intake_figures(result: smtpload.LoadResult) -> dict[str, Any]:
    latencies = result.latencies_ms()
    return {
        "accepted": len(result.accepted),
        "refused_or_failed": len(result.sent) - len(result.accepted) + len(result.errors),
        "errors": result.errors[:5],
        "msgs_per_s": result.rate,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
    }


def run_bare(messages: list[bytes], clients: int) -> dict[str, Any]:
    port = free_port()
    server = smtpload.start_count_only(port)
    try:
        cpu_before = proc_cpu_seconds(server.pid)
        result = smtpload.send_all(port, messages, clients=clients)
        figures = intake_figures(result)
        figures["server_cpu_ms_per_msg"] = 1000 * (proc_cpu_seconds(server.pid) - cpu_before) / len(messages)
    finally:
        smtpload.stop(server)
    return figures


def pg_counters(stack: Stack) -> dict[str, int]:
    """PostgreSQL's own count of commits and row changes in the service's database."""
    if stack.backend != "postgresql":
        return {}
    query = (
        "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_fetched "
        "FROM pg_stat_database WHERE datname = %s"
    )
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute(query, (PG_DATABASE,)).fetchone()
    names = ("commits", "rollbacks", "inserted", "updated", "deleted", "fetched")
    counters = dict(zip(names, row or (), strict=False))
    # Rows read per table (sequential scans plus index fetches): where "fetched" comes from.
    tables = "SELECT relname, seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables"
    with psycopg.connect(
        f"postgresql://postgres@127.0.0.1:5432/{PG_DATABASE}", autocommit=True
    ) as connection:
        for table, read in connection.execute(tables).fetchall():
            counters[f"read:{table}"] = int(read)
    return counters


def end_to_end(
    stack: Stack,
    result: smtpload.LoadResult,
    *,
    cpu_before: float,
    counters_before: dict[str, int],
    timeout: float,
) -> dict[str, Any]:
    """After the clients' last 250: wait until every ticket's card is posted and every
    acknowledgement received, and say how fast that was and what it cost the service (all of its
    processes, from `cpu_before` = `stack.cpu_seconds()` before the clients started)."""
    cpu_intake = stack.cpu_seconds() - cpu_before
    expected = len(result.accepted)
    done = stack.wait_until(
        lambda: stack.card_count() >= expected and stack.acknowledgements() >= expected, timeout
    )
    cards = stack.cards()
    acks = [m.received for m in list(stack.sink.messages)]
    last = max([c.time for c in cards] + acks, default=float("nan"))
    figures: dict[str, Any] = {
        "cards": len(cards),
        "acknowledgements": stack.acknowledgements(),
        "complete": done,
        "e2e_msgs_per_s": len(cards) / (last - result.started) if cards else 0.0,
        "e2e_seconds": last - result.started,
        "lag_after_last_250_s": last - result.finished,
        "server_cpu_ms_per_msg_intake": 1000 * cpu_intake / max(1, expected),
        "server_cpu_ms_per_msg_total": 1000 * (stack.cpu_seconds() - cpu_before) / max(1, expected),
    }
    # The statistics collector reports with a short delay; what it shows per ticket is enough.
    time.sleep(1.0)
    after = pg_counters(stack)
    figures["pg_per_ticket"] = {k: (after[k] - counters_before.get(k, 0)) / max(1, expected) for k in after}
    return figures


def run_ours(backend: str, messages: list[bytes], clients: int, e2e_timeout: float) -> dict[str, Any]:
    stack = Stack(backend).start()
    try:
        counters_before = pg_counters(stack)
        cpu_before = stack.cpu_seconds()
        result = smtpload.send_all(stack.smtp_port, messages, clients=clients)
        figures = intake_figures(result)
        figures.update(
            end_to_end(
                stack, result, cpu_before=cpu_before, counters_before=counters_before, timeout=e2e_timeout
            )
        )
    finally:
        figures_exit = stack.stop()
        stack.cleanup()
    figures["exit_code"] = figures_exit
    return figures


def show(label: str, values: list[float], unit: str, digits: int = 1) -> None:
    print(f"  {label:<52} {summarize(values).text(unit, digits)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Figures 1 and 2: email intake vs the bare limit and the peer."
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-peer", action="store_true", help="skip figure 2's peer import")
    parser.add_argument("--e2e-timeout", type=float, default=600.0, help="seconds to wait for cards and acks")
    add_code_argument(parser)
    args = parser.parse_args()
    machine = print_machine()
    messages, source = mailgen.customer_mix(args.messages)
    print(
        f"{len(messages)} messages from the {source}, {sum(map(len, messages)) // len(messages)} B on average"
    )
    backends = args.backends.split(",")
    peer_problem = None if not args.no_peer else "skipped (--no-peer)"
    if peer_problem is None:
        peer_problem = peer.ensure_peer()
    if peer_problem:
        print(f"figure 2's peer is not measured: {peer_problem}")

    runs: list[dict[str, Any]] = []
    for run in range(args.runs):
        record: dict[str, Any] = {"bare": run_bare(messages, args.clients)}
        print(f"[run {run + 1}] bare aiosmtpd: {record['bare']['msgs_per_s']:.0f} msg/s", flush=True)
        for backend in backends:
            record[backend] = run_ours(backend, messages, args.clients, args.e2e_timeout)
            ours = record[backend]
            print(
                f"[run {run + 1}] servicedesk on {backend}: {ours['msgs_per_s']:.0f} msg/s intake, "
                f"p50 {ours['p50_ms']:.1f} ms, p99 {ours['p99_ms']:.1f} ms; end to end "
                f"{ours['e2e_msgs_per_s']:.1f} tickets/s ({ours['cards']} cards, "
                f"{ours['acknowledgements']} acks{'' if ours['complete'] else ', INCOMPLETE'}); "
                f"exit {ours['exit_code']}",
                flush=True,
            )
        if not peer_problem:
            record["peer"] = peer.run_peer(args.messages)
            print(f"[run {run + 1}] django-helpdesk: {record['peer']['msgs_per_s']:.1f} msg/s", flush=True)
        runs.append(record)

    print(f"\nFigure 1: intake of {args.messages} messages, {args.clients} clients reconnecting per message")
    show("bare aiosmtpd (count only), msg/s", [r["bare"]["msgs_per_s"] for r in runs], "", 0)
    show("bare aiosmtpd p99 DATA->250", [r["bare"]["p99_ms"] for r in runs], " ms")
    for backend in backends:
        show(f"{backend}: msg/s", [r[backend]["msgs_per_s"] for r in runs], "", 0)
        show(
            f"{backend}: share of the bare limit (goal >= 40 %)",
            [100 * r[backend]["msgs_per_s"] / r["bare"]["msgs_per_s"] for r in runs],
            " %",
            0,
        )
        show(f"{backend}: p50 DATA->250", [r[backend]["p50_ms"] for r in runs], " ms")
        show(f"{backend}: p99 DATA->250 (goal < 50 ms)", [r[backend]["p99_ms"] for r in runs], " ms")
        show(
            f"{backend}: server CPU per message, intake phase",
            [r[backend]["server_cpu_ms_per_msg_intake"] for r in runs],
            " ms",
            2,
        )
    print("\nFigure 2: end to end (card in the emulator and acknowledgement sent) against the peer")
    for backend in backends:
        show(f"{backend}: tickets/s end to end", [r[backend]["e2e_msgs_per_s"] for r in runs], "")
        show(
            f"{backend}: server CPU per ticket, all work",
            [r[backend]["server_cpu_ms_per_msg_total"] for r in runs],
            " ms",
            2,
        )
    for backend in backends:
        per_ticket = [r[backend].get("pg_per_ticket") for r in runs if r[backend].get("pg_per_ticket")]
        if not per_ticket:
            continue
        for key in ("commits", "inserted", "updated", "fetched"):
            show(f"{backend}: database {key} per ticket", [p[key] for p in per_ticket], "")
        reads = sorted((k for k in per_ticket[0] if k.startswith("read:")), key=lambda k: -per_ticket[0][k])
        for key in reads[:3]:
            show(f"{backend}: rows read per ticket, {key[5:]}", [p.get(key, 0) for p in per_ticket], "")
    if not peer_problem:
        show("django-helpdesk get_email, msg/s", [r["peer"]["msgs_per_s"] for r in runs], "")
        for backend in backends:
            show(
                f"{backend}: ours / peer (goal >= 4x)",
                [r[backend]["e2e_msgs_per_s"] / r["peer"]["msgs_per_s"] for r in runs],
                "x",
                2,
            )
    save_results("intake", {"machine": machine, "source": source, "args": vars(args), "runs": runs})


if __name__ == "__main__":
    main()
