"""A flood against an emulator that enforces Slack's limits (1 post a second per channel, burst 3,
300 a minute per workspace): the worker keeps to the limit instead of collecting 429s, and what
Slack does refuse is retried after Retry-After without losing or repeating anything."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bot.assembly import build_worker
from bot.delivery import SlackDelivery
from bot.delivery.rate_gate import RateGate
from bot.worker import Worker, WorkerConfig
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import TRIAGE
from store.models import OutboxState, utcnow
from store.outbox import Kind
from tests.bot.delivery_kit import (  # noqa: F401 (fixtures)
    client_for,
    desk_for,
    emulator_fixture,
    open_email_ticket,
    open_rows,
    posts_by_row,
    rows,
    run_until_drained,
    worker_for,
)

TICKETS = 5  # ten posts into the triage channel: a burst of three, then one a second


@pytest.mark.parametrize("pacing", [True, False], ids=["paced", "unpaced"])
def test_a_flood_into_one_channel_keeps_to_slacks_limit(
    database_url: str, emulator: SlackEmulator, tmp_path: Path, pacing: bool
) -> None:
    emulator.rate_limits(enabled=True)
    desk = desk_for(database_url, emulator, tmp_path / "files", slack_pacing=pacing)
    for n in range(TICKETS):
        open_email_ticket(desk, subject=f"Request {n}")
    delivery = SlackDelivery(desk, client_for(emulator))
    run_until_drained(worker_for(desk, delivery.performers()), desk.db)

    posts = emulator.calls_to("chat.postMessage", channel=TRIAGE)
    refused = [call for call in posts if call.status == 429]
    print(f"\n429s {'paced' if pacing else 'unpaced'}: {len(refused)} of {len(posts)} calls")
    if pacing:
        # The gate waits for each slot. A stall of the machine can still bunch two requests up
        # on the way to Slack (and Slack then answers one 429), but never a storm.
        assert len(refused) <= 1
    else:
        assert len(refused) >= 1  # Slack pushes back; the outbox still gets everything through
    assert {row.state for row in rows(desk.db)} == {OutboxState.DONE}
    assert sorted(posts_by_row(emulator).values()) == [1] * (2 * TICKETS)


FLOOD = 10  # twenty posts into the triage channel


def test_unpaced_a_channel_slack_refuses_is_paced_from_then_on(
    database_url: str, emulator: SlackEmulator, tmp_path: Path
) -> None:
    """Pacing off, as for an endpoint without Slack's limits, against one that has them: the cards
    of the flood go up all at once and Slack refuses all but its burst. The refused come back one by
    one after Retry-After, not all together to be refused again and again (before: 430 refusals for
    60 posts, seven a post)."""
    emulator.rate_limits(enabled=True)
    desk = desk_for(database_url, emulator, tmp_path / "files", slack_pacing=False)
    for n in range(FLOOD):
        open_email_ticket(desk, subject=f"Request {n}")
    delivery = SlackDelivery(desk, client_for(emulator))
    run_until_drained(worker_for(desk, delivery.performers()), desk.db, timeout=120)

    posts = emulator.calls_to("chat.postMessage", channel=TRIAGE)
    refused = [call for call in posts if call.status == 429]
    print(f"\n429s unpaced after Slack's first: {len(refused)} of {len(posts)} calls")
    # The first wave's refusals (all the cards but a burst of three), and no more than a stall of
    # the machine bunching two requests up can add.
    assert len(refused) <= FLOOD
    assert {row.state for row in rows(desk.db)} == {OutboxState.DONE}
    assert sorted(posts_by_row(emulator).values()) == [1] * (2 * FLOOD)


def test_two_workers_together_keep_to_a_channels_limit(
    database_url: str, emulator: SlackEmulator, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL): one worker on SQLite")
    emulator.rate_limits(enabled=True)
    desk = desk_for(database_url, emulator, tmp_path / "files", slack_pacing=True)
    counted: dict[str, list[int]] = {}
    workers = []
    for name in ("a", "b"):
        delivery = SlackDelivery(desk, client_for(emulator))
        seen = counted.setdefault(name, [])

        def told(workers: int, gate: RateGate = delivery.calls.gate, seen: list[int] = seen) -> None:
            seen.append(workers)
            gate.share_among(workers)

        config = WorkerConfig(lease=timedelta(seconds=30), pause_state_interval=0.0, presence_interval=0.1)
        performers = delivery.performers()
        workers.append(Worker(desk.db, performers, {}, on_workers=told, worker_id=f"w-{name}", config=config))

    async def run() -> None:
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            # Both know of the other before the flood comes.
            while not all(seen and seen[-1] == 2 for seen in counted.values()):
                await asyncio.sleep(0.02)
            for n in range(TICKETS):
                await asyncio.to_thread(open_email_ticket, desk, subject=f"Request {n}")
            while await asyncio.to_thread(open_rows, desk.db):
                await asyncio.sleep(0.05)
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*tasks)

    asyncio.run(asyncio.wait_for(run(), timeout=90))
    posts = emulator.calls_to("chat.postMessage", channel=TRIAGE)
    refused = [call for call in posts if call.status == 429]
    print(f"\n429s with two workers sharing the limit: {len(refused)} of {len(posts)} calls")
    assert len(refused) <= 1  # as for one worker: a stall can bunch two requests up, never a storm
    assert sorted(posts_by_row(emulator).values()) == [1] * (2 * TICKETS)
    assert {row.state for row in rows(desk.db)} == {OutboxState.DONE}


def test_a_stop_gives_back_the_rows_waiting_for_their_slot_as_never_sent(
    database_url: str, emulator: SlackEmulator, tmp_path: Path
) -> None:
    """The worker stops (a deploy's SIGTERM) while rows wait in the process for their slot in a busy
    channel: they never reached Slack, so they go back due at their slot, their attempt not counted,
    not as calls cut off mid-way (due only 45 s later, and read for in the thread first)."""
    emulator.rate_limits(enabled=True)
    desk = desk_for(database_url, emulator, tmp_path / "files", slack_pacing=True)
    for n in range(TICKETS):
        open_email_ticket(desk, subject=f"Request {n}")
    # The worker as serve builds it. Slots are a second apart after a burst of three: the rows
    # waiting for theirs outlast the stop's drain.
    config = WorkerConfig(drain_timeout=0.3, pause_state_interval=0.0)
    worker = build_worker(desk, client=client_for(emulator), worker_id="w-stopping", config=config)

    async def run() -> None:
        task = asyncio.create_task(worker.run())
        while len(emulator.calls_to("chat.postMessage", channel=TRIAGE)) < 3:
            await asyncio.sleep(0.01)
        worker.stop()
        await asyncio.wait_for(task, timeout=10)

    stopped = utcnow()
    asyncio.run(run())
    waiting = [row for row in rows(desk.db, Kind.CARD.value) if row.state == OutboxState.PENDING]
    assert waiting, "no card was waiting for its slot at the stop"
    assert [row.attempts for row in waiting] == [0] * len(waiting)
    assert all(row.next_attempt_at < stopped + timedelta(seconds=10) for row in waiting)

    run_until_drained(build_worker(desk, client=client_for(emulator), worker_id="w-next"), desk.db)
    assert sorted(posts_by_row(emulator).values()) == [1] * (2 * TICKETS)
    assert not emulator.calls_to("conversations.history")  # nothing to look for: nothing was cut off
