"""The worker's email ingest alone, under pyinstrument: what one email costs from queue to ticket.

    .venv/bin/pip install pyinstrument                          # into the venv only
    .venv/bin/python bench/profile_ingest.py                     # 500 emails, SQLite
    .venv/bin/python bench/profile_ingest.py --backend postgresql --messages 300

No SMTP, no Slack, no other task: the peer generator's messages are put in the intake queue with
the store's own `inbound.accept`, then the product's `EmailIngest.handle` is called on each claimed
item, one after another, in this process. That is the per-email cost the worker pays before any
delivery (parse, files, the one transaction that opens the ticket and writes its outbox rows),
without the noise of the other roles; pyinstrument shows where it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import mailgen
import psycopg
from benchlib import add_code_argument, print_machine
from smtpload import envelope_sender
from stack import PG_ADMIN_URL, PG_DATABASE, SUPPORT_ADDRESS

from mail.ingest import EmailIngest
from store import inbound
from store.context import Desk
from store.migrate import upgrade
from store.settings import Settings

T = TypeVar("T")


async def _inline(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return func(*args, **kwargs)


async def ingest_all(desk: Desk, count: int) -> int:
    handler = EmailIngest(desk)
    done = 0
    while done < count:
        work = await asyncio.to_thread(inbound.claim, desk.db, "bench", limit=20, kinds=frozenset({"email"}))
        if not work:
            break
        for item in work:
            await handler.handle(item, "bench")
            done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description="pyinstrument profile of the worker's email ingest.")
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--interval", type=float, default=0.001, help="pyinstrument sampling interval, s")
    add_code_argument(parser)
    args = parser.parse_args()
    from pyinstrument import Profiler

    print_machine()
    workdir = Path(tempfile.mkdtemp(prefix="sd-bench-ingest-"))
    if args.backend == "sqlite":
        url = f"sqlite:///{workdir / 'ingest.db'}"
    else:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DATABASE}"
    settings = Settings(
        database_url=url,
        support_address=SUPPORT_ADDRESS,
        files_dir=workdir / "files",
        triage_channel="C0TRIAGE",
    )
    desk = Desk.build(settings)
    try:
        upgrade(desk.db)
        messages, source = mailgen.customer_mix(args.messages)
        for raw in messages:
            message_id = raw.split(b"Message-ID:", 1)[1].split(b"\r\n", 1)[0].strip().decode()
            payload = {"mail_from": envelope_sender(raw), "rcpt_tos": [SUPPORT_ADDRESS]}
            inbound.accept(desk.db, "email", f"email:{message_id}", payload=payload, raw=raw)
        # pyinstrument sees one thread: the handler's asyncio.to_thread calls run inline instead,
        # which changes nothing else here (one email at a time, nothing else on the loop).
        asyncio.to_thread = _inline
        profiler = Profiler(interval=args.interval, async_mode="disabled")
        started, cpu = time.perf_counter(), time.process_time()
        profiler.start()
        done = asyncio.run(ingest_all(desk, len(messages)))
        profiler.stop()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"{done} emails from the {source} ingested on {args.backend}")
        print(
            f"  {1000 * wall / done:.1f} ms wall, {1000 * cpu / done:.1f} ms CPU per email, one at a time\n"
        )
        print(profiler.output_text(unicode=True, color=False, show_all=False, timeline=False))
    finally:
        desk.db.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
        if args.backend == "postgresql":
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')


if __name__ == "__main__":
    main()
