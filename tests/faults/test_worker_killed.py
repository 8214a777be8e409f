"""kill -9 of `servicedesk serve --role worker` at random moments while a few hundred rows drain:
after each restart, every row is delivered exactly once (counted in the emulator by metadata)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.faults import Fault
from sandbox.slack_emulator import SlackEmulator
from store.context import Desk
from store.models import OutboxState
from tests.bot.delivery_kit import desk_for
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

KILLS = 5
TICKETS = 80  # about 370 rows: cards, copies, thread lines, acknowledgements, replies, receipts


def wait_for_done(desk: Desk, count: int, worker: WorkerProcess) -> None:
    """Until `count` rows are done (or all are, when fewer are left)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        counted = states(desk.db)
        if counted[OutboxState.DONE] >= min(count, sum(counted.values())):
            return
        assert worker.process.poll() is None, worker.output()
        assert time.monotonic() < deadline, f"no progress: {counted}"
        time.sleep(0.02)


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as running:
        yield running


def test_killed_workers_deliver_every_row_exactly_once(
    database_url: str, emulator: SlackEmulator, tmp_path: Path
) -> None:
    desk: Desk = desk_for(database_url, emulator, tmp_path / "files")
    fill(desk, emulator, TICKETS, lines=2)
    rows = sum(states(desk.db).values())
    assert rows >= 250
    # Slack answers each post after a short while, so a kill lands mid-call often: the post may
    # have taken effect with nobody left to record it.
    emulator.add_fault("chat.postMessage", Fault.hang(0.05), times=None)
    env = worker_env(database_url, emulator, tmp_path / "files")
    rng = random.Random(20240611)
    started = time.monotonic()
    workers: list[WorkerProcess] = []
    # First one stopped the polite way mid-drain: it exits 0 and holds nothing afterwards.
    stopped = WorkerProcess(env, tmp_path, "worker-sigterm")
    workers.append(stopped)
    wait_for_done(desk, states(desk.db)[OutboxState.DONE] + rng.randint(5, 20), stopped)
    code = stopped.terminate()
    assert code == 0, f"exit {code}\n{stopped.output()}"
    held_after_stop = states(desk.db)[OutboxState.CLAIMED]  # finished or given back: none held
    kills_mid_drain = 0
    for number in range(KILLS):
        worker = WorkerProcess(env, tmp_path, f"worker-{number}")
        workers.append(worker)
        # Kill once it has delivered a random few more rows: a moment mid-drain however fast
        # or loaded the machine is (start-up alone can take seconds on a busy one).
        wait_for_done(desk, states(desk.db)[OutboxState.DONE] + rng.randint(5, 20), worker)
        left = states(desk.db)
        worker.kill()
        if not (left[OutboxState.PENDING] or left[OutboxState.CLAIMED]):
            break  # all delivered already: nothing left to interrupt
        kills_mid_drain += 1
    last = WorkerProcess(env, tmp_path, "worker-last")
    workers.append(last)
    try:
        wait_drained(desk.db, alive=last.process)
    finally:
        code = last.terminate()
        assert code == 0, f"exit {code}\n{last.output()}"
    seconds = time.monotonic() - started

    duplicates, losses = duplicates_and_losses(desk.db, emulator)
    logs = "".join(worker.output() for worker in workers)
    given_back = logs.count("which is no longer running")
    found = logs.count("was posted by an earlier attempt")
    Figures(
        "kill -9 of the worker",
        rows,
        duplicates,
        losses,
        seconds,
        note=f"kills mid-drain={kills_mid_drain} reclaimed-at-start={given_back} "
        f"posts-found-not-reposted={found} held-after-sigterm={held_after_stop}",
    ).report()
    assert kills_mid_drain >= 3
    assert held_after_stop == 0
    assert (duplicates, losses) == (0, 0)
    assert states(desk.db) == {OutboxState.DONE: rows}
