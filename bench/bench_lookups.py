"""Figure 7: hot lookups at 10k and at 1M stored messages; the goal is time(1M) / time(10k) < 2.

    .venv/bin/python bench/bench_lookups.py                        # SQLite and PostgreSQL, 10k and 1M
    .venv/bin/python bench/bench_lookups.py --backends sqlite --sizes 10000,100000 --runs 3

Each size gets a fresh database, migrated by the product (`store.migrate.upgrade`) and filled
with SQLAlchemy Core bulk inserts in the proportions of a working desk: per stored message a
quarter of a ticket, a twentieth of a customer, half a Message-ID (the email half), one intake
item (its Slack event_id or Message-ID, processed) and one finished outbox row. Keys look random
(hashes), as real reply keys and Message-IDs do, so the indexes are not filled in key order.

The lookups go through the product's own functions, each in its own `db.transaction()` as the
adapters call them; each run times `--lookups` calls of each kind on random stored keys.
Sizes are measured interleaved (10k, 1M, 10k, 1M ...) so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from benchlib import Summary, add_code_argument, print_machine, save_results, summarize
from sqlalchemy import Engine, create_engine, insert, text

from store import inbound, outbox
from store.actions.tickets import ticket_by_email_ids, ticket_by_reply_key, ticket_by_slack_thread
from store.db import Database
from store.migrate import upgrade
from store.models import (
    Customer,
    EmailId,
    InboundItem,
    Message,
    Outbox,
    Status,
    Ticket,
)
from store.queries import TicketFilter, list_tickets

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB_PREFIX = "servicedesk_bench_lookups"
TRIAGE = "C0TRIAGE"
BATCH = 10_000
BODY = (
    "Since the update the export stops at 98 % and the page only says that something went "
    "wrong. We tried another browser and cleared the cache; the same happens to a colleague. "
) * 2
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def key(kind: str, i: int) -> str:
    """A random-looking but reproducible key: 32 hex characters (a valid reply key, too)."""
    return hashlib.blake2b(f"{kind}:{i}".encode(), digest_size=16).hexdigest()


def thread_ts(i: int) -> str:
    # Slack ts strings grow with time, as the triage threads of a desk do.
    return f"{1_760_000_000 + i * 37}.{i % 1_000_000:06d}"


def message_id(i: int) -> str:
    return f"<{key('mid', i)}@mail.example.com>"


def event_key(i: int) -> str:
    return f"slack:Ev{key('ev', i)[:12].upper()}"


@dataclass(frozen=True)
class Shape:
    messages: int

    @property
    def tickets(self) -> int:
        return max(1, self.messages // 4)

    @property
    def customers(self) -> int:
        return max(1, self.messages // 20)

    @property
    def email_ids(self) -> int:
        return self.messages // 2


# The working queue does not grow with history: the newest ACTIVE_QUEUE tickets are open or
# pending, everything older is resolved or closed.
ACTIVE_QUEUE = 250


def _status(i: int, tickets: int) -> str:
    if i >= tickets - ACTIVE_QUEUE:
        return Status.OPEN if i % 3 else Status.PENDING
    return Status.RESOLVED if i % 10 == 0 else Status.CLOSED


def _rows(shape: Shape) -> Iterator[tuple[Any, Callable[[int], dict[str, Any]], int]]:
    """(table, row builder, count) in foreign-key order."""

    def customer(i: int) -> dict[str, Any]:
        return {
            "id": i + 1,
            "name": f"Customer {i}",
            "email": f"c{i}@{key('dom', i % 997)[:8]}.example",
            "created_at": EPOCH,
        }

    def ticket(i: int) -> dict[str, Any]:
        at = EPOCH + timedelta(minutes=i)
        return {
            "id": i + 1,
            "number": i + 1,
            "subject": f"Request {i}",
            "status": _status(i, shape.tickets),
            "priority": "normal",
            "origin": "email",
            "requester_id": i % shape.customers + 1,
            "reply_key": key("reply", i),
            "triage_channel": TRIAGE,
            "triage_ts": thread_ts(i),
            "created_at": at,
            "updated_at": at + timedelta(hours=i % 48),
        }

    def message(i: int) -> dict[str, Any]:
        email = i % 2 == 0
        return {
            "id": i + 1,
            "ticket_id": i // 4 % shape.tickets + 1,
            "direction": "inbound",
            "visibility": "public",
            "source": "email" if email else "slack",
            "author_name": "Customer",
            "body_markdown": BODY,
            "email_message_id": message_id(i // 2) if email else None,
            "mirror_channel": TRIAGE,
            "mirror_ts": f"{thread_ts(i // 4)}{i % 4}",
            "created_at": EPOCH + timedelta(seconds=15 * i),
        }

    def email_id(i: int) -> dict[str, Any]:
        return {
            "id": i + 1,
            "message_id": message_id(i),
            "ticket_id": (2 * i) // 4 % shape.tickets + 1,
            "direction": "received",
            "created_at": EPOCH,
        }

    def intake(i: int) -> dict[str, Any]:
        email = i % 2 == 0
        return {
            "id": i + 1,
            "kind": "email" if email else "slack_event",
            "dedupe_key": f"email:{message_id(i // 2)}" if email else event_key(i),
            "lane": None if email else f"slack:{TRIAGE}",
            "payload": {},
            "raw": None,
            "state": "done",
            "attempts": 1,
            "received_at": EPOCH,
            "processed_at": EPOCH,
        }

    def delivery(i: int) -> dict[str, Any]:
        return {
            "id": i + 1,
            "kind": "slack.thread_post",
            "ticket_id": i // 4 % shape.tickets + 1,
            "lane": f"triage:{i // 4 % shape.tickets + 1}",
            "payload": {},
            "state": "done",
            "attempts": 1,
            "next_attempt_at": EPOCH,
            "result": {},
            "created_at": EPOCH,
            "done_at": EPOCH,
        }

    yield Customer.__table__, customer, shape.customers
    yield Ticket.__table__, ticket, shape.tickets
    yield Message.__table__, message, shape.messages
    yield EmailId.__table__, email_id, shape.email_ids
    yield InboundItem.__table__, intake, shape.messages
    yield Outbox.__table__, delivery, shape.messages


def bulk_load(engine: Engine, shape: Shape, analyze_sqlite: bool = False) -> float:
    started = time.perf_counter()
    for table, build, count in _rows(shape):
        for start in range(0, count, BATCH):
            with engine.begin() as connection:
                connection.execute(insert(table), [build(i) for i in range(start, min(count, start + BATCH))])
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    elif analyze_sqlite:
        # Off by default: the product never runs ANALYZE on SQLite, and with its statistics the
        # planner picks full scans for the OR-shaped lookups (see bench/README.md).
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


# ----- the lookups -----


def queue_listing(db: Database) -> int:
    """The first page of `/desk list`: open and pending tickets, most recently changed first."""
    with db.transaction() as session:
        return len(list_tickets(session, TicketFilter(), limit=20).items)


def lookups(db: Database, shape: Shape, rng: random.Random) -> dict[str, Callable[[], object]]:
    def by_thread() -> object:
        with db.transaction() as session:
            found = ticket_by_slack_thread(session, TRIAGE, thread_ts(rng.randrange(shape.tickets)))
            assert found is not None
            return found

    def by_reply_key() -> object:
        with db.transaction() as session:
            found = ticket_by_reply_key(session, key("reply", rng.randrange(shape.tickets)))
            assert found is not None
            return found

    def by_message_id() -> object:
        with db.transaction() as session:
            # In-Reply-To first (unknown here, as a foreign client's id often is), then References.
            ids = [f"<unknown.{rng.random()}@elsewhere.example>", message_id(rng.randrange(shape.email_ids))]
            found = ticket_by_email_ids(session, ids)
            assert found is not None
            return found

    def event_dedupe() -> object:
        # A Slack retry of an event already stored: the store refuses it, nothing changes.
        index = rng.randrange(shape.messages // 2) * 2 + 1
        stored = inbound.accept(db, "slack_event", event_key(index), payload={}, lane=f"slack:{TRIAGE}")
        assert not stored
        return stored

    def listing() -> object:
        assert queue_listing(db) > 0
        return None

    def worker_idle_claims() -> object:
        # What an idle worker runs every pass: nothing is due among all the finished rows.
        assert not inbound.claim(db, "bench-worker", kinds=frozenset({"email", "slack_event"}))
        assert not outbox.claim_due(db, "bench-worker")
        return None

    def empty_transaction() -> object:
        # The floor under every lookup: a connection, BEGIN, the cheapest statement, COMMIT.
        with db.transaction() as session:
            return session.execute(text("SELECT 1")).scalar()

    return {
        "SELECT 1 transaction (the floor)": empty_transaction,
        "ticket by thread ts": by_thread,
        "ticket by reply key": by_reply_key,
        "ticket by Message-ID": by_message_id,
        "event dedupe (duplicate accept)": event_dedupe,
        "queue listing (/desk list, first page)": listing,
        "worker idle claim (intake + outbox)": worker_idle_claims,
    }


def time_each(fn: Callable[[], object], count: int) -> float:
    """Median microseconds of `count` calls (the median resists the machine's hiccups)."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    times.sort()
    return 1e6 * times[len(times) // 2]


# ----- databases -----


def pg_url(name: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def pg_recreate(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def pg_drop(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(
    backend: str, size: int, workdir: Path, analyze_sqlite: bool
) -> tuple[Database, Callable[[], None]]:
    if backend == "sqlite":
        url = f"sqlite:///{workdir / f'lookups-{size}.db'}"
        cleanup: Callable[[], None] = lambda: None  # noqa: E731  (the work dir goes as a whole)
    else:
        name = f"{PG_DB_PREFIX}_{size}"
        pg_recreate(name)
        url = pg_url(name)
        cleanup = lambda: pg_drop(name)  # noqa: E731
    db = Database(url)
    upgrade(db)
    # A plain engine for loading: the product's SQLite engine opens a connection per transaction.
    loader = create_engine(url)
    seconds = bulk_load(loader, Shape(size), analyze_sqlite)
    loader.dispose()
    print(f"  {backend} {size:>9,} messages loaded in {seconds:.0f} s", flush=True)
    return db, cleanup


def main() -> None:
    parser = argparse.ArgumentParser(description="Figure 7: hot lookups at 10k and 1M stored messages.")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="10000,1000000", help="stored messages, smallest first")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=500, help="calls of each lookup per run")
    parser.add_argument(
        "--sqlite-analyze", action="store_true", help="run ANALYZE on the SQLite files after loading"
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases (SQLite files are printed)")
    add_code_argument(parser)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    machine = print_machine()
    workdir = Path(tempfile.mkdtemp(prefix="sd-bench-lookups-"))
    results: dict[str, Any] = {"machine": machine, "args": vars(args), "sizes": sizes, "backends": {}}
    try:
        for backend in args.backends.split(","):
            print(f"{backend}: loading", flush=True)
            prepared = {size: prepare(backend, size, workdir, args.sqlite_analyze) for size in sizes}
            per_run: dict[tuple[str, int], list[float]] = {}
            for run in range(args.runs + 1):  # run 0 warms caches and is not counted
                for size, (db, _) in prepared.items():
                    rng = random.Random(run * 1000 + size)
                    for name, fn in lookups(db, Shape(size), rng).items():
                        micros = time_each(fn, args.lookups)
                        if run:
                            per_run.setdefault((name, size), []).append(micros)
            table: dict[str, Any] = {}
            print(f"\n{backend}: microseconds per lookup, median of {args.runs} runs (min–max)")
            names = list(dict.fromkeys(name for name, _ in per_run))
            for name in names:
                summaries: dict[int, Summary] = {size: summarize(per_run[(name, size)]) for size in sizes}
                ratio = summarize(
                    [
                        big / small
                        for big, small in zip(
                            per_run[(name, sizes[-1])], per_run[(name, sizes[0])], strict=True
                        )
                    ]
                )
                cells = "  ".join(f"{size:>9,}: {summaries[size].text(' µs', 0):<28}" for size in sizes)
                print(f"  {name:<40} {cells} ratio {ratio.text('×', 2)}")
                table[name] = {**{str(s): summaries[s].as_dict() for s in sizes}, "ratio": ratio.as_dict()}
            results["backends"][backend] = table
            for db, cleanup in prepared.values():
                db.dispose()
                if not args.keep:
                    cleanup()
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    save_results("lookups", results)


if __name__ == "__main__":
    main()
