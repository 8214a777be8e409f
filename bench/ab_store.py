"""The worker's store operations, one by one, for several commits side by side: CPU per operation.

    .venv/bin/python bench/ab_store.py bf1a0d5 HEAD                  # SQLite, 3 rounds
    .venv/bin/python bench/ab_store.py bf1a0d5 HEAD --backend postgresql --rounds 5

Figure 2's end-to-end run moves by ±5 % between runs on these machines, more than a change to one
statement buys. This measures the operations the worker repeats for every ticket apart, each
through the product's own functions on a real store, in a fresh process per commit (a `git
archive` of its product packages first on PYTHONPATH), the commits taking turns in each round:

- empty: a write transaction with only `SELECT 1` in it, the floor under every operation below
  (the pool's checkout and return, BEGIN, COMMIT);
- claim: `outbox.claim_due` taking 3 due rows (a ticket's card, thread post and acknowledgement);
- settle: `bot.worker_settle.settle` recording a delivered row (its transaction included);
- intake: `inbound.claim` of one item and `inbound.finish` in a transaction of its own;
- read: `read_message`, what a thread post reads before it is posted;
- facts: `mail.delivery.read_facts` in a read transaction, what an email reads before it is composed;
- card: `read_card`, what a card post or update reads (the ticket and everything the card shows);
- ingest: `EmailIngest.handle` on one email of the peer generator's mix (parse, files, the
  transaction that opens the ticket), as the worker runs it.

Prints microseconds of CPU per operation (median of the rounds, min–max) and each commit's ratio
to the first. The API used is the same in every commit measured since the worker's claim change
(`760f4ab`).

`--instructions` counts instead of timing, for the ingest alone: CPU time on a shared machine
swings by up to 2× from one process to the next, an instruction count does not. Each commit's child
runs under valgrind's callgrind twice, accepting the same mails and ingesting the first
`--tickets / 4` of them, then all; the difference over the extra mails is the instructions one
ingest costs (the start-up, the migration and the accepting cancel out). `PYTHONHASHSEED=0`, so a
rerun gives the same count within 0.2 % (random keys and timestamps differ). On PostgreSQL it
counts this process only, not the server's work. About 7 minutes per commit for 100 mails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import BENCH_DIR, committed_code, print_machine, summarize
from stack import PG_ADMIN_URL, PG_DATABASE

TICKETS = 300
OPERATIONS = ("empty", "claim", "settle", "intake", "read", "facts", "card", "ingest")
SUPPORT = "support@desk.example"


def _desk(database_url: str) -> Any:
    """A migrated store and the desk on it, as the child measures it (the product's own types)."""
    import logging

    from store.context import Desk
    from store.db import Database
    from store.migrate import upgrade
    from store.settings import Settings

    logging.disable(logging.WARNING)
    db = Database(database_url)
    upgrade(db)
    files = Path(tempfile.mkdtemp(prefix="sd-ab-store-files-"))
    settings = Settings(
        database_url=database_url, triage_channel="C0TRIAGE", files_dir=files, support_address=SUPPORT
    )
    return Desk.build(settings, db=db)


def _accept_mails(desk: Any, tickets: int) -> None:
    """The peer generator's first `tickets` mails in the intake queue, as the SMTP intake leaves them."""
    import mailgen
    from smtpload import envelope_sender

    from store import inbound

    mails, _source = mailgen.customer_mix(tickets)
    for raw in mails:
        message_id = raw.split(b"Message-ID:", 1)[1].split(b"\r\n", 1)[0].strip().decode()
        payload = {"mail_from": envelope_sender(raw), "rcpt_tos": [SUPPORT]}
        inbound.accept(desk.db, "email", f"email:{message_id}", payload=payload, raw=raw)


def measure(database_url: str, tickets: int) -> dict[str, float]:
    """In the child: the product's code is whatever PYTHONPATH put first."""
    import asyncio

    from sqlalchemy import text

    from bot.delivery.reads import read_card, read_message
    from bot.outcomes import Done
    from bot.worker_settle import settle
    from mail.delivery import read_facts
    from mail.ingest import EmailIngest
    from store import actions, inbound, outbox

    desk = _desk(database_url)
    db = desk.db
    message_ids: list[int] = []
    ticket_ids: list[int] = []
    for number in range(tickets):
        with db.transaction() as session:
            customer = actions.customer_for_email(session, f"user{number}@example.com", f"User {number}")
            ticket = actions.open_ticket(
                session,
                desk.policy,
                subject=f"Request {number}",
                requester=customer,
                origin=actions.tickets.Origin.EMAIL,  # type: ignore[attr-defined]
                actor=actions.DESK,
            )
            message = actions.messages.add_customer_message(  # type: ignore[attr-defined]
                session, desk.policy, ticket, customer=customer, body_markdown="Hello", source="email"
            )
            # The acknowledgement's row, as the email ingest enqueues it.
            actions.common.enqueue_emails(  # type: ignore[attr-defined]
                session, ticket, desk.policy, template="acknowledgement"
            )
            session.flush()
            message_ids.append(message.id)
            ticket_ids.append(ticket.id)

    spent: dict[str, float] = {name: 0.0 for name in OPERATIONS}
    counts: dict[str, int] = {name: 0 for name in OPERATIONS}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        started = time.process_time()
        answer = call()
        spent[name] += time.process_time() - started
        counts[name] += 1
        return answer

    while True:
        items = timed("claim", lambda: outbox.claim_due(db, "bench", limit=3))
        if not items:
            counts["claim"] -= 1  # the empty claim that ended the loop is not a claim of 3
            break
        for item in items:
            if item.kind == outbox.Kind.EMAIL:
                with db.read() as session:
                    facts = timed("facts", lambda item=item, session=session: read_facts(session, item))
                assert not isinstance(facts, str), facts
            timed("settle", lambda item=item: settle(db, "bench", item, Done(result={"ts": "1.000100"})))
    inbound.accept_all(
        db, [inbound.Arrival("email", f"<{n}@bench>", payload={}, raw=b"x" * 4000) for n in range(tickets)]
    )

    def claim_and_finish() -> None:
        (work,) = inbound.claim(db, "bench", limit=1)
        with db.transaction() as session:
            assert inbound.finish(session, work.id, "bench")

    for _ in range(tickets):
        timed("intake", claim_and_finish)

    def empty_transaction() -> None:
        with db.transaction() as session:
            session.execute(text("SELECT 1"))

    for _ in range(tickets):
        timed("empty", empty_transaction)
    for message_id in message_ids:
        timed("read", lambda message_id=message_id: read_message(db, message_id))
    for ticket_id in ticket_ids:
        timed("card", lambda ticket_id=ticket_id: read_card(db, ticket_id))

    _accept_mails(desk, tickets)
    ingest = EmailIngest(desk)

    async def ingest_all() -> None:
        while work := inbound.claim(db, "bench", limit=20, kinds=frozenset({"email"})):
            for item in work:
                started = time.process_time()
                await ingest.handle(item, "bench")
                spent["ingest"] += time.process_time() - started
                counts["ingest"] += 1

    asyncio.run(ingest_all())
    db.dispose()
    return {name: 1e6 * spent[name] / max(1, counts[name]) for name in OPERATIONS}


def measure_ingest(database_url: str, tickets: int, ingested: int) -> int:
    """In the child, for `--instructions`: accept `tickets` mails, ingest the first `ingested`."""
    import asyncio

    from mail.ingest import EmailIngest
    from store import inbound

    desk = _desk(database_url)
    db = desk.db
    _accept_mails(desk, tickets)
    ingest = EmailIngest(desk)

    async def ingest_some() -> int:
        done = 0
        while done < ingested:
            work = inbound.claim(db, "bench", limit=min(20, ingested - done), kinds=frozenset({"email"}))
            for item in work:
                await ingest.handle(item, "bench")
            done += len(work)
        return done

    done = asyncio.run(ingest_some())
    db.dispose()
    return done


def count_instructions(code: Path, backend: str, tickets: int, ingested: int) -> int:
    """Instructions the child executes (all its threads), counted by callgrind."""
    env = {**child_env(code), "PYTHONHASHSEED": "0"}
    database_url = fresh_database(backend)
    with tempfile.TemporaryDirectory(prefix="sd-ab-store-cg-") as folder:
        log_file = Path(folder) / "valgrind.log"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={folder}/callgrind.out",
            f"--log-file={log_file}",
            sys.executable,
            __file__,
            "--child",
            database_url,
            "--tickets",
            str(tickets),
            "--ingested",
            str(ingested),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        report = log_file.read_text() if log_file.exists() else ""
        if done.returncode != 0:
            raise SystemExit(f"the measuring process failed:\n{done.stderr[-3000:]}{report[-2000:]}")
        collected = [line for line in report.splitlines() if "Collected :" in line]
        if not collected:
            raise SystemExit(f"callgrind reported no count:\n{report[-2000:]}")
        return int(collected[-1].rsplit(":", 1)[1].strip())


def instructions_per_ingest(codes: list[tuple[str, Path]], backend: str, tickets: int, rounds: int) -> None:
    first = max(1, tickets // 4)
    print(f"{tickets} mails accepted; instructions of the ingest of mails {first + 1}–{tickets}, per mail")
    figures: dict[str, list[float]] = {sha: [] for sha, _ in codes}
    for round_number in range(1, rounds + 1):
        for sha, code in codes:
            few = count_instructions(code, backend, tickets, first)
            all_ = count_instructions(code, backend, tickets, tickets)
            per_mail = (all_ - few) / (tickets - first)
            figures[sha].append(per_mail)
            print(f"[round {round_number}] {sha}: {per_mail / 1e6:.2f} M instructions per ingest", flush=True)
    base = summarize(figures[codes[0][0]]).median
    print(f"\nInstructions per ingest, millions (median of {rounds} rounds; ratio to {codes[0][0]})")
    for sha, _ in codes:
        summary = summarize(figures[sha])
        spread = f"{summary.low / 1e6:.2f}–{summary.high / 1e6:.2f}"
        print(f"  {sha}: {summary.median / 1e6:.2f} ({spread}) = {summary.median / base:.3f}x")


def fresh_database(backend: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='sd-ab-store-')}/servicedesk.db"
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"


def child_env(code: Path) -> dict[str, str]:
    """The measuring process's environment: the commit's product packages first on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(BENCH_DIR)])}


def run_child(code: Path, backend: str, tickets: int) -> dict[str, float]:
    env = child_env(code)
    database_url = fresh_database(backend)
    done = subprocess.run(
        [sys.executable, __file__, "--child", database_url, "--tickets", str(tickets)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the measuring process failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU per store operation, several commits interleaved.")
    parser.add_argument("refs", nargs="*", help="commits to compare (e.g. bf1a0d5 HEAD)")
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tickets", type=int, default=TICKETS)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count the ingest's instructions under valgrind instead of timing every operation",
    )
    parser.add_argument("--child", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--ingested", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.ingested is not None:
        print(json.dumps(measure_ingest(args.child, args.tickets, args.ingested)))
        return
    if args.child:
        print(json.dumps(measure(args.child, args.tickets)))
        return
    if not args.refs:
        parser.error("name at least one commit")
    print_machine()
    codes = [committed_code(ref) for ref in args.refs]
    if args.instructions:
        instructions_per_ingest(codes, args.backend, args.tickets, args.rounds)
        return
    print(f"{args.tickets} tickets, {args.backend}; microseconds of CPU per operation")
    figures: dict[str, dict[str, list[float]]] = {sha: {name: [] for name in OPERATIONS} for sha, _ in codes}
    for round_number in range(1, args.rounds + 1):
        for sha, code in codes:
            answer = run_child(code, args.backend, args.tickets)
            line = ", ".join(f"{name} {answer[name]:.0f}" for name in OPERATIONS)
            print(f"[round {round_number}] {sha}: {line}", flush=True)
            for name in OPERATIONS:
                figures[sha][name].append(answer[name])
    print(f"\nCPU per operation, µs (median of {args.rounds} rounds, min–max; ratio to {codes[0][0]})")
    first = figures[codes[0][0]]
    for sha, _ in codes:
        parts = []
        for name in OPERATIONS:
            summary = summarize(figures[sha][name])
            base = summarize(first[name]).median
            spread = f"{summary.low:.0f}–{summary.high:.0f}"
            parts.append(f"{name} {summary.median:.0f} ({spread}) = {summary.median / base:.2f}x")
        print(f"  {sha}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
