"""PostgreSQL only: four worker processes draining one outbox with SKIP LOCKED, and a worker that
loses its database for a while (a TCP proxy the test cuts) and carries on."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url

from mail.intake import EMAIL, sender_lane
from sandbox.faults import Fault
from sandbox.mail_sink import MailSink
from sandbox.slack_emulator import SlackEmulator
from store import inbound
from store.context import Desk
from store.db import Database
from store.models import InboundItem, InboundState, Outbox, OutboxState, Ticket, utcnow
from tests.bot.delivery_kit import desk_for
from tests.conftest import POSTGRES_URL
from tests.faults.kit import (
    WAIT_SECONDS,
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


def wait_sessions_ended(db: Database, client_ports: frozenset[int]) -> None:
    """Until the server has no session left for these client ports (the proxy's side of each)."""
    deadline = time.monotonic() + WAIT_SECONDS
    query = text("SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(:ports)")
    while True:
        with db.transaction() as session:
            if not session.scalar(query, {"ports": list(client_ports)}):
                return
        assert time.monotonic() < deadline, f"sessions on ports {sorted(client_ports)} never ended"
        time.sleep(0.02)


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


@dataclass
class CutWorker:
    """A worker behind a TCP proxy the test has cut, a quarter of the outbox delivered."""

    desk: Desk
    rows: int
    proxy: TcpProxy
    worker: WorkerProcess
    exit_code: int | None = None


@contextmanager
def a_worker_cut_off(
    database_url: str, emulator: SlackEmulator, tmp_path: Path, *, relay_url: str | None = None
) -> Iterator[CutWorker]:
    desk: Desk = desk_for(database_url, emulator, tmp_path / "files")
    fill(desk, emulator, 60, lines=3)
    rows = sum(states(desk.db).values())
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.start()).render_as_string(hide_password=False)
    # Slow answers keep rows in flight when the database goes away.
    emulator.add_fault("chat.postMessage", Fault.hang(0.05), times=None)
    env = worker_env(proxied, emulator, tmp_path / "files")
    if relay_url:
        env["SERVICEDESK_SMTP_RELAY_URL"] = relay_url
    worker = WorkerProcess(env, tmp_path, "worker")
    cut = CutWorker(desk, rows, proxy, worker)
    try:
        deadline = time.monotonic() + 60
        while states(desk.db)[OutboxState.DONE] < rows // 4:
            assert worker.process.poll() is None and time.monotonic() < deadline, worker.output()
            time.sleep(0.02)
        dropped = proxy.cut()
        # A COMMIT the server received before the cut still lands; the outage starts when the
        # server has ended those sessions.
        wait_sessions_ended(desk.db, dropped)
        yield cut
    finally:
        cut.exit_code = worker.terminate()
        proxy.stop()


def test_a_worker_survives_a_database_outage_and_resumes(
    database_url: str, emulator: SlackEmulator, tmp_path: Path
) -> None:
    with a_worker_cut_off(database_url, emulator, tmp_path) as cut:
        cut_at_done = states(cut.desk.db)[OutboxState.DONE]
        time.sleep(3.0)  # the outage: every query fails, connections are refused
        done_during = states(cut.desk.db)[OutboxState.DONE] - cut_at_done
        cut.proxy.restore()
        started = time.monotonic()
        wait_drained(cut.desk.db, alive=cut.worker.process)
        seconds = time.monotonic() - started

    output = cut.worker.output()
    duplicates, losses = duplicates_and_losses(cut.desk.db, emulator)
    Figures(
        "database outage (3 s) under the worker",
        cut.rows,
        duplicates,
        losses,
        seconds,
        note=f"done while cut={done_during} outage lines={output.count('worker cannot reach the database')}",
    ).report()
    assert cut.exit_code == 0
    assert done_during == 0
    assert output.count("worker cannot reach the database") == 1, output  # logged once, not per pass
    assert "database reachable again; worker resumes" in output
    assert "taken over by another worker" not in output  # there is no other worker
    assert (duplicates, losses) == (0, 0)
    assert states(cut.desk.db) == {OutboxState.DONE: cut.rows}


def test_claims_whose_answer_the_outage_swallowed_are_taken_back_when_it_ends(
    database_url: str, emulator: SlackEmulator, tmp_path: Path
) -> None:
    """The server committed a claim as the connection went: rows and an intake item are held under
    the worker's id with a long lease, and the worker never learnt of them. Once the database is
    back the worker gives them back and does them, long before the lease would lapse."""
    with MailSink() as sink, a_worker_cut_off(database_url, emulator, tmp_path, relay_url=sink.url) as cut:
        db = cut.desk.db
        with db.transaction() as session:
            worker_id = session.scalar(select(Outbox.claimed_by).where(Outbox.state == OutboxState.DONE))
        assert worker_id is not None
        rows_held = hold_as_lost_claims(db, worker_id)
        deadline = time.monotonic() + WAIT_SECONDS
        while "worker cannot reach the database" not in cut.worker.output():
            assert time.monotonic() < deadline, cut.worker.output()
            time.sleep(0.02)
        cut.proxy.restore()
        # The leases run ten minutes; a worker that waited them out would fail these waits.
        wait_intake_done(db, alive=cut.worker.process)
        wait_drained(db, alive=cut.worker.process)

    output = cut.worker.output()
    assert cut.exit_code == 0
    # At least the five; a real claim the cut interrupted may add its own.
    [taken_back] = re.findall(r"took back (\d+) delivery row\(s\) claimed as the database went away", output)
    assert int(taken_back) >= len(rows_held), output
    assert "took back 1 intake item(s) held when the database went away" in output
    assert duplicates_and_losses(db, emulator) == (0, 0)
    assert list(states(db)) == [OutboxState.DONE]
    with db.transaction() as session:
        held_again = session.scalars(select(Outbox.attempts).where(Outbox.id.in_(rows_held))).all()
        subjects = session.scalars(select(Ticket.subject)).all()
    assert held_again == [1] * len(rows_held)  # the claim nobody acted on is not counted as an attempt
    assert "Lost in the cut" in subjects
    assert [mail.rcpt_tos for mail in sink.wait_for(1)] == [["eve@customer.test"]]  # acknowledged once


def hold_as_lost_claims(db: Database, worker_id: str) -> list[int]:
    """What a claim committed as the connection went leaves: five due rows and a new email held under
    `worker_id`, their leases ten minutes away. Returns the rows' ids."""
    until = utcnow() + timedelta(minutes=10)
    raw = b"From: Eve <eve@customer.test>\r\nTo: support@acme.example\r\nSubject: Lost in the cut\r\n"
    raw += b"Message-ID: <cut@customer.test>\r\n\r\nHello\r\n"
    payload = {"mail_from": "eve@customer.test", "rcpt_tos": ["support@acme.example"], "peer": "127.0.0.1"}
    assert inbound.accept(
        db, EMAIL, "email:cut@customer.test", payload=payload, raw=raw, lane=sender_lane("eve@customer.test")
    )
    with db.transaction() as session:
        rows = list(
            session.scalars(
                select(Outbox.id).where(Outbox.state == OutboxState.PENDING).order_by(Outbox.id).limit(5)
            )
        )
        held = {"state": "claimed", "claimed_by": worker_id, "claimed_until": until}
        session.execute(
            update(Outbox).where(Outbox.id.in_(rows)).values(attempts=Outbox.attempts + 1, **held)
        )
        session.execute(
            update(InboundItem)
            .where(InboundItem.dedupe_key == "email:cut@customer.test")
            .values(attempts=InboundItem.attempts + 1, **held)
        )
    assert len(rows) == 5
    return rows


def wait_intake_done(db: Database, *, alive: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        with db.transaction() as session:
            if not session.scalar(
                select(func.count()).select_from(InboundItem).where(InboundItem.state != InboundState.DONE)
            ):
                return
        assert alive.poll() is None, "the worker exited"
        assert time.monotonic() < deadline, "intake items still not done"
        time.sleep(0.05)
