"""PostgreSQL only: four worker processes draining one outbox with SKIP LOCKED, and a worker that
loses its database for a while (a TCP proxy the test cuts) and carries on."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from sandbox.faults import Fault
from sandbox.slack_emulator import SlackEmulator
from store.context import Desk
from store.models import Outbox, OutboxState
from tests.bot.delivery_kit import desk_for
from tests.conftest import POSTGRES_URL
from tests.faults.kit import (
    Figures,
    WorkerProcess,
    duplicates_and_losses,
    fill,
    states,
    wait_drained,
    worker_env,
)
from tests.faults.tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")

WORKERS = 4


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as running:
        yield running


def test_four_workers_drain_2000_rows_each_delivered_once(
    database_url: str, emulator: SlackEmulator, tmp_path: Path
) -> None:
    desk: Desk = desk_for(database_url, emulator, tmp_path / "files")
    fill(desk, emulator, 200, lines=8, slack_every=0)  # 200 tickets x (card, message, 8 lines)
    rows = sum(states(desk.db).values())
    assert rows == 2000
    env = worker_env(database_url, emulator, tmp_path / "files")
    started = time.monotonic()
    workers = [WorkerProcess(env, tmp_path, f"worker-{n}") for n in range(WORKERS)]
    try:
        wait_drained(desk.db, timeout=240)
    finally:
        codes = [worker.terminate() for worker in workers]
    seconds = time.monotonic() - started

    duplicates, losses = duplicates_and_losses(desk.db, emulator)
    with desk.db.transaction() as session:
        by_worker = Counter(session.scalars(select(Outbox.claimed_by)))
    shares = sorted(by_worker.values(), reverse=True)
    Figures(
        "4 workers on PostgreSQL", rows, duplicates, losses, seconds, note=f"rows per worker={shares}"
    ).report()
    assert codes == [0] * WORKERS
    assert (duplicates, losses) == (0, 0)
    assert states(desk.db) == {OutboxState.DONE: rows}
    assert len(by_worker) == WORKERS  # every worker took a share


def test_a_worker_survives_a_database_outage_and_resumes(
    database_url: str, emulator: SlackEmulator, tmp_path: Path
) -> None:
    desk: Desk = desk_for(database_url, emulator, tmp_path / "files")
    fill(desk, emulator, 60, lines=3)
    rows = sum(states(desk.db).values())
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.start()).render_as_string(hide_password=False)
    # Slow answers keep rows in flight when the database goes away.
    emulator.add_fault("chat.postMessage", Fault.hang(0.05), times=None)
    worker = WorkerProcess(worker_env(proxied, emulator, tmp_path / "files"), tmp_path, "worker")
    try:
        deadline = time.monotonic() + 60
        while states(desk.db)[OutboxState.DONE] < rows // 4:
            assert worker.process.poll() is None and time.monotonic() < deadline, worker.output()
            time.sleep(0.02)
        proxy.cut()
        cut_at_done = states(desk.db)[OutboxState.DONE]
        time.sleep(3.0)  # the outage: every query fails, connections are refused
        done_during = states(desk.db)[OutboxState.DONE] - cut_at_done
        proxy.restore()
        started = time.monotonic()
        wait_drained(desk.db, alive=worker.process)
        seconds = time.monotonic() - started
    finally:
        code = worker.terminate()
        proxy.stop()

    output = worker.output()
    duplicates, losses = duplicates_and_losses(desk.db, emulator)
    Figures(
        "database outage (3 s) under the worker",
        rows,
        duplicates,
        losses,
        seconds,
        note=f"done while cut={done_during} outage lines={output.count('worker cannot reach the database')}",
    ).report()
    assert code == 0
    assert done_during == 0
    assert output.count("worker cannot reach the database") == 1, output  # logged once, not per pass
    assert "database reachable again; worker resumes" in output
    assert (duplicates, losses) == (0, 0)
    assert states(desk.db) == {OutboxState.DONE: rows}
