"""The worker woken by committed work, with a poll too long to matter; freed slots refilled together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.outcomes import Done, Outcome
from bot.worker import Worker, WorkerConfig
from store import inbound, outbox
from store.context import Desk
from store.db import Database
from store.outbox import Kind, OutboxItem
from store.settings import Settings

pytestmark = pytest.mark.timeout(60)

LONG = 600.0  # a poll (and a refill delay) no test waits for
WAIT = 20.0  # bounds a broken test; never an assertion about speed


@pytest.fixture
def desk(database_url: str, tmp_path: Path) -> Desk:
    settings = Settings(database_url=database_url, triage_channel="C0TRIAGE", files_dir=tmp_path / "files")
    return Desk.build(settings, db=Database(database_url))


def enqueue_emails(db: Database, count: int) -> None:
    with db.transaction() as session:
        for n in range(count):
            outbox.enqueue(session, Kind.EMAIL, payload={"n": n})


class Gated:
    """A performer whose rows finish only when the test lets each one go."""

    def __init__(self) -> None:
        self.seen: list[OutboxItem] = []
        self.gates: dict[int, asyncio.Event] = {}

    async def __call__(self, item: OutboxItem) -> Outcome:
        self.seen.append(item)
        await self.gates.setdefault(item.id, asyncio.Event()).wait()
        return Done()

    def release(self, *row_ids: int) -> None:
        for row_id in row_ids:
            self.gates.setdefault(row_id, asyncio.Event()).set()


async def until(condition: object, what: str) -> None:
    async def poll() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout=WAIT)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


def slow_refill(*, max_in_flight: int, refill_share: float) -> WorkerConfig:
    """Slots refilled only once `refill_share` of them is free (the delay is never seen out)."""
    return WorkerConfig(
        idle_sleep=LONG,
        max_idle_sleep=LONG,
        max_in_flight=max_in_flight,
        refill_share=refill_share,
        refill_delay=LONG,
    )


@contextlib.asynccontextmanager
async def running(
    desk: Desk, performer: Gated, kinds: tuple[Kind, ...], config: WorkerConfig
) -> AsyncIterator[Worker]:
    """A worker woken by the store's notices, performing `kinds` with `performer`; stopped on exit
    once every row it took is let go and settled."""
    work = Worker(desk.db, {kind.value: performer for kind in kinds}, {}, worker_id="w-test", config=config)
    unsubscribe = work.wake_on(desk.db.wakeups)
    task = asyncio.create_task(work.run())
    try:
        yield work
        performer.release(*(item.id for item in performer.seen))
        await until(lambda: not work._in_flight, "everything settled")
    finally:
        unsubscribe()
        work.stop()
        await asyncio.wait_for(task, timeout=WAIT)


def test_new_intake_items_and_outbox_rows_wake_a_worker_on_a_long_poll(desk: Desk) -> None:
    handled: list[int] = []
    delivered: list[int] = []

    async def handler(work: inbound.InboundWork, worker_id: str) -> None:
        # The worker's own ingest: the effects (an outbox row) are committed with the item's finish.
        with desk.db.transaction() as session:
            inbound.finish(session, work.id, worker_id)
            outbox.enqueue(session, Kind.EMAIL, payload={"from_item": work.id})
        handled.append(work.id)

    async def performer(item: OutboxItem) -> Outcome:
        delivered.append(item.id)
        return Done()

    async def run() -> None:
        config = WorkerConfig(idle_sleep=LONG, max_idle_sleep=LONG)
        performers = {Kind.EMAIL.value: performer}
        work = Worker(desk.db, performers, {"email": handler}, worker_id="w-test", config=config)
        unsubscribe = work.wake_on(desk.db.wakeups)
        task = asyncio.create_task(work.run())
        for n in range(1, 4):
            # Committed on another thread, as the SMTP intake does.
            await asyncio.to_thread(inbound.accept, desk.db, "email", f"k{n}", raw=b"x")
            await until(lambda n=n: len(delivered) == n, f"delivery {n}")  # type: ignore[misc]
        unsubscribe()
        work.stop()
        await asyncio.wait_for(task, timeout=WAIT)

    asyncio.run(run())
    assert len(handled) == 3


def test_freed_slots_are_refilled_together_but_new_work_is_claimed_at_once(desk: Desk) -> None:
    enqueue_emails(desk.db, 8)
    performer = Gated()
    # A refill waits for every slot to be free (or a delay no test sees out).
    config = slow_refill(max_in_flight=4, refill_share=1.0)

    async def run() -> None:
        async with running(desk, performer, (Kind.EMAIL,), config) as work:
            await until(lambda: len(performer.seen) == 4, "four rows in flight")
            first = [item.id for item in performer.seen]

            performer.release(*first[:3])
            await until(lambda: len(work._in_flight) == 1, "three rows settled")
            await asyncio.sleep(0.2)  # a chance to refill, which it must not take yet
            assert len(performer.seen) == 4

            performer.release(first[3])
            await until(lambda: len(performer.seen) == 8, "the four slots refilled")
            second = [item.id for item in performer.seen[4:]]
            performer.release(*second[:1])
            await until(lambda: len(work._in_flight) == 3, "one row settled")

            # New work committed now is claimed at once, into the slot that is free.
            await asyncio.to_thread(enqueue_emails, desk.db, 1)
            await until(lambda: len(performer.seen) == 9, "the new row claimed")

    asyncio.run(run())
    assert len({item.id for item in performer.seen}) == 9


def test_a_rows_lane_successor_is_claimed_as_soon_as_the_row_is_done(desk: Desk) -> None:
    # The card and the customer's message after it share the ticket's lane: the message is held back
    # until the card is done. Three other rows stay in flight, so no refill would claim it. One slot
    # is left free: the announcement may come while the card's own slot is still taken.
    lane = outbox.triage_lane(1)
    with desk.db.transaction() as session:
        card = outbox.enqueue(session, Kind.CARD, lane=lane)
        post = outbox.enqueue(session, Kind.THREAD_POST, lane=lane)
        for n in range(3):
            outbox.enqueue(session, Kind.EMAIL, payload={"n": n})
        session.flush()
        card_id, post_id = card.id, post.id
    performer = Gated()
    config = slow_refill(max_in_flight=5, refill_share=1.0)

    async def run() -> None:
        async with running(desk, performer, (Kind.CARD, Kind.THREAD_POST, Kind.EMAIL), config):
            await until(lambda: len(performer.seen) == 4, "the card and three emails in flight")
            assert post_id not in [item.id for item in performer.seen]

            performer.release(card_id)
            await until(lambda: len(performer.seen) == 5, "the lane's next row claimed")
            assert performer.seen[4].id == post_id

    asyncio.run(run())


def test_a_freed_slot_claims_nothing_when_the_last_claim_took_everything_due(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims: list[int] = []
    claim_due = outbox.claim_due

    def counted(*args: object, **kwargs: object) -> list[OutboxItem]:
        items = claim_due(*args, **kwargs)  # type: ignore[arg-type]
        claims.append(len(items))
        return items

    monkeypatch.setattr(outbox, "claim_due", counted)
    enqueue_emails(desk.db, 3)
    performer = Gated()
    # Every freed slot would be refilled at once, were a refill due.
    config = WorkerConfig(idle_sleep=LONG, max_idle_sleep=LONG, refill_share=0.0, refill_delay=0.0)

    async def run() -> None:
        async with running(desk, performer, (Kind.EMAIL,), config) as work:
            await until(lambda: len(performer.seen) == 3, "three rows in flight")
            claimed_before = list(claims)
            assert sum(claimed_before) == 3

            performer.release(*(item.id for item in performer.seen))
            await until(lambda: not work._in_flight, "the three rows settled")
            await asyncio.sleep(0.2)  # a chance to claim again, which it must not take
            assert claims == claimed_before

            # New work is still claimed at once.
            await asyncio.to_thread(enqueue_emails, desk.db, 1)
            await until(lambda: len(performer.seen) == 4, "the new row claimed")

    asyncio.run(run())


def test_work_committed_while_every_slot_is_busy_is_claimed_when_one_frees(desk: Desk) -> None:
    # The claim that took the last free slot marks the backlog; the announcement that finds no
    # slot free must not be lost with it.
    enqueue_emails(desk.db, 2)
    performer = Gated()
    config = slow_refill(max_in_flight=2, refill_share=0.5)

    async def run() -> None:
        async with running(desk, performer, (Kind.EMAIL,), config):
            await until(lambda: len(performer.seen) == 2, "both slots busy")
            await asyncio.to_thread(enqueue_emails, desk.db, 1)
            await asyncio.sleep(0.2)  # announced while no slot is free: it waits
            assert len(performer.seen) == 2

            performer.release(performer.seen[0].id)
            await until(lambda: len(performer.seen) == 3, "the waiting row claimed into the freed slot")

    asyncio.run(run())
