"""The worker loop with test performers: leases, backoff, deadlines, stopping, pausing, logs."""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import worker_ids
from bot.outcomes import Done, Fail, Outcome, Pause, Retry
from bot.worker import Worker, WorkerConfig
from bot.worker_ids import default_worker_id, holder_pid, local_prefix, process_alive
from bot.worker_settle import settle
from store import actions, outbox
from store.context import Desk
from store.db import Database
from store.models import Outbox, OutboxState, Ticket, utcnow
from store.outbox import Kind, OutboxItem
from store.service_state import set_slack_paused, slack_paused
from store.settings import Settings

FAST = {"idle_sleep": 0.01, "max_idle_sleep": 0.05, "pause_state_interval": 0.0, "pause_check_interval": 0.05}


@pytest.fixture
def desk(database_url: str, tmp_path: Path) -> Desk:
    settings = Settings(database_url=database_url, triage_channel="C0TRIAGE", files_dir=tmp_path / "files")
    return Desk.build(settings, db=Database(database_url))


def open_ticket(desk: Desk, *, origin_channel: str | None = None) -> int:
    with desk.db.transaction() as session:
        customer = actions.customer_for_email(session, "dan@globex.example", "Dan")
        ticket = actions.open_ticket(
            session,
            desk.policy,
            subject="Printer",
            requester=customer,
            origin=actions.tickets.Origin.EMAIL,  # type: ignore[attr-defined]
            actor=actions.DESK,
            origin_channel=origin_channel,
            origin_thread_ts="1700000000.000100" if origin_channel else None,
        )
        return ticket.id


def add_line(desk: Desk, ticket_id: int, text: str) -> None:
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        actions.common.thread_line(session, ticket, text)  # type: ignore[attr-defined]


def all_rows(db: Database) -> list[Outbox]:
    with db.transaction() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


class Recorder:
    """A performer that answers from a script and remembers what it was given."""

    def __init__(self, *outcomes: Outcome, default: Outcome | None = None) -> None:
        self.script = list(outcomes)
        self.default = default or Done()
        self.seen: list[OutboxItem] = []

    async def __call__(self, item: OutboxItem) -> Outcome:
        self.seen.append(item)
        return self.script.pop(0) if self.script else self.default


def worker(desk: Desk, performer: Recorder, *, kinds: list[Kind] | None = None, **config: object) -> Worker:
    performers = {kind.value: performer for kind in (kinds or list(Kind))}
    return Worker(desk.db, performers, {}, worker_id="w-test", config=WorkerConfig(**{**FAST, **config}))  # type: ignore[arg-type]


def test_backoff_grows_with_jitter_up_to_a_cap() -> None:
    rng = random.Random(7)
    waits = [outbox.backoff_delay(attempt, rng).total_seconds() for attempt in range(1, 15)]
    steps = [min(2.0 * 2 ** (attempt - 1), 600.0) for attempt in range(1, 15)]
    assert all(step / 2 <= wait <= step for wait, step in zip(waits, steps, strict=True))
    assert len({round(w, 3) for w in waits[-4:]}) == 4  # capped, yet not all the same


def test_a_dead_workers_rows_come_back_after_the_lease(desk: Desk) -> None:
    open_ticket(desk)
    (item,) = outbox.claim_due(desk.db, "dead-worker", lease=timedelta(seconds=-1))
    assert item.attempts == 1
    performer = Recorder()
    asyncio.run(worker(desk, performer).run_once())
    assert [(seen.id, seen.attempts) for seen in performer.seen] == [(item.id, 2)]
    assert all_rows(desk.db)[0].state == OutboxState.DONE
    # The dead worker's late outcome is dropped: the row is no longer its own.
    with desk.db.transaction() as session:
        assert not outbox.mark_done(session, item.id, "dead-worker")


def test_a_live_workers_lease_is_renewed_while_it_works(desk: Desk) -> None:
    open_ticket(desk)
    items = outbox.claim_due(desk.db, "w-test", lease=timedelta(seconds=1))
    assert outbox.extend_leases(desk.db, "w-test", [items[0].id], timedelta(minutes=5)) == 1
    assert outbox.claim_due(desk.db, "other", kinds=None) == []
    assert outbox.extend_leases(desk.db, "other", [items[0].id], timedelta(minutes=5)) == 0


def test_a_retry_is_scheduled_with_backoff_and_its_error_kept(desk: Desk) -> None:
    open_ticket(desk)
    performer = Recorder(Retry("Slack answered HTTP 503"))
    asyncio.run(worker(desk, performer).run_once())
    (row,) = all_rows(desk.db)
    assert row.state == OutboxState.PENDING and row.attempts == 1
    assert row.last_error == "Slack answered HTTP 503"
    assert row.next_attempt_at > row.created_at + timedelta(seconds=0.9)


def test_past_its_deadline_a_row_fails_and_the_thread_is_told(desk: Desk) -> None:
    ticket_id = open_ticket(desk, origin_channel="C0CONNECT")
    with desk.db.transaction() as session:
        for row in session.scalars(select(Outbox)):
            row.deadline_at = row.created_at  # already past
    performer = Recorder(default=Retry("no answer from Slack (TimeoutError)"))
    asyncio.run(worker(desk, performer, kinds=[Kind.ORIGIN_ACK]).run_once())
    rows = {row.kind: row for row in all_rows(desk.db)}
    assert rows[Kind.ORIGIN_ACK].state == OutboxState.FAILED
    line = rows[Kind.THREAD_LINE]
    assert (
        line.ticket_id == ticket_id and "Couldn't post in the customer's Slack thread" in line.payload["text"]
    )
    assert "gave up after 1 attempts" in line.payload["text"]


def test_a_permanent_failure_fails_at_once(desk: Desk) -> None:
    open_ticket(desk, origin_channel="C0CONNECT")
    performer = Recorder(Fail("the channel is archived"))
    asyncio.run(worker(desk, performer, kinds=[Kind.ORIGIN_ACK]).run_once())
    rows = {row.kind: row for row in all_rows(desk.db)}
    assert rows[Kind.ORIGIN_ACK].state == OutboxState.FAILED
    assert rows[Kind.ORIGIN_ACK].last_error == "the channel is archived"
    assert "archived" in rows[Kind.THREAD_LINE].payload["text"]


def test_a_settle_repeated_after_an_outage_hid_its_answer_is_known_as_recorded(desk: Desk) -> None:
    # The commit landed but its answer was lost: the worker keeps the outcome and settles it again.
    for _ in range(3):
        open_ticket(desk)
    done_item, failed_item, retried_item = outbox.claim_due(desk.db, "w1")
    retry = Retry("Slack answered HTTP 503")
    assert settle(desk.db, "w1", done_item, Done({"ts": "1.1"})) == "done"
    assert settle(desk.db, "w1", failed_item, Fail("the channel is archived")) == "failed"
    assert settle(desk.db, "w1", retried_item, retry) == "pending"
    rows = {row.id: (row.state, row.attempts, row.next_attempt_at) for row in all_rows(desk.db)}
    assert settle(desk.db, "w1", done_item, Done({"ts": "1.1"})) == "recorded"
    assert settle(desk.db, "w1", failed_item, Fail("the channel is archived")) == "recorded"
    assert settle(desk.db, "w1", retried_item, retry) == "recorded"
    assert settle(desk.db, "w2", done_item, Done({"ts": "1.1"})) == "lost"  # not w2's to record
    # Nothing written twice: no second failure line in the thread, the retry's wait not moved.
    assert {row.id: (row.state, row.attempts, row.next_attempt_at) for row in all_rows(desk.db)} == rows
    # Claimed since by another worker: this worker's late outcome is not its to record.
    with desk.db.transaction() as session:
        row = session.get(Outbox, retried_item.id)
        assert row is not None
        row.next_attempt_at = row.created_at
    assert [item.id for item in outbox.claim_due(desk.db, "w2", kinds=frozenset({Kind.CARD.value}))] == [
        retried_item.id
    ]
    assert settle(desk.db, "w1", retried_item, retry) == "lost"


def test_a_performer_bug_is_kept_as_a_retry_not_a_crash(desk: Desk) -> None:
    open_ticket(desk)

    async def broken(item: OutboxItem) -> Outcome:
        raise KeyError("ts")

    work = Worker(desk.db, {Kind.CARD.value: broken}, {}, worker_id="w-test", config=WorkerConfig(**FAST))  # type: ignore[arg-type]
    asyncio.run(work.run_once())
    (row,) = all_rows(desk.db)
    assert row.state == OutboxState.PENDING and row.last_error == "KeyError: 'ts'"


def test_logs_name_the_row_and_the_ticket(desk: Desk, caplog: pytest.LogCaptureFixture) -> None:
    open_ticket(desk)
    performer = Recorder(Fail("not_in_channel"))
    with caplog.at_level(logging.INFO, logger="bot.worker"):
        asyncio.run(worker(desk, performer).run_once())
    (record,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert "ticket #1" in record.getMessage() and "slack.card" in record.getMessage()
    assert record.row_id == all_rows(desk.db)[0].id and record.ticket_number == 1  # type: ignore[attr-defined]


def test_lanes_keep_thread_order_while_other_tickets_flow(desk: Desk) -> None:
    first, second = open_ticket(desk), open_ticket(desk)
    add_line(desk, first, "line 1")
    add_line(desk, first, "line 2")
    performer = Recorder()

    async def run() -> None:
        work = worker(desk, performer)
        task = asyncio.create_task(work.run())
        while any(row.state != OutboxState.DONE for row in all_rows(desk.db)):
            await asyncio.sleep(0.02)
        work.stop()
        await task

    asyncio.run(run())
    order = [(item.ticket_id, item.kind, item.payload.get("text")) for item in performer.seen]
    first_lane = [entry for entry in order if entry[0] == first]
    assert first_lane == [
        (first, "slack.card", None),
        (first, "slack.thread_line", "line 1"),
        (first, "slack.thread_line", "line 2"),
    ]
    assert (second, "slack.card", None) in order


def test_stop_finishes_what_is_quick_and_gives_back_what_hangs(desk: Desk) -> None:
    for _ in range(3):
        open_ticket(desk)
    release_hang = asyncio.Event()
    finished: list[int] = []

    async def performer(item: OutboxItem) -> Outcome:
        if item.ticket_id == 3:
            await release_hang.wait()  # a Slack call that never answers
        finished.append(item.id)
        return Done()

    config = WorkerConfig(**{**FAST, "drain_timeout": 0.3})  # type: ignore[arg-type]

    async def run() -> None:
        work = Worker(desk.db, {Kind.CARD.value: performer}, {}, worker_id="w-test", config=config)
        task = asyncio.create_task(work.run())
        while len(finished) < 2:
            await asyncio.sleep(0.01)
        work.stop()
        await asyncio.wait_for(task, timeout=5)

    stopped = utcnow()
    asyncio.run(run())
    states = Counter((row.state, row.claimed_by, row.attempts) for row in all_rows(desk.db))
    # Two done; the hung one is given back with its attempt still counted (its outcome is unknown,
    # so the next attempt looks for what it may have posted), and not before the call it cut off
    # could have taken effect, or that look would find nothing and post again.
    assert states == Counter({("done", "w-test", 1): 2, ("pending", None, 1): 1})
    [hung] = [row for row in all_rows(desk.db) if row.state == "pending"]
    assert hung.next_attempt_at >= stopped + config.slack_settles_in


def test_a_revoked_token_pauses_slack_rows_until_auth_test_works(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        open_ticket(desk)
    token_ok = False
    checks = 0

    async def token_check() -> bool:
        nonlocal checks
        checks += 1
        return token_ok

    pause = Recorder(default=Pause("Slack rejected the bot token (token_revoked)"))
    email = Recorder()
    performers = {kind: pause for kind in outbox.SLACK_KINDS} | {Kind.EMAIL.value: email}
    work = Worker(
        desk.db, performers, {}, token_check=token_check, worker_id="w-test", config=WorkerConfig(**FAST)
    )  # type: ignore[arg-type]

    async def run() -> None:
        nonlocal token_ok
        with caplog.at_level(logging.ERROR, logger="bot.worker"):
            await work.run_once()
            for _ in range(5):
                await work.run_once()  # paused: Slack rows are not claimed
        assert len(pause.seen) == 3
        token_ok = True
        pause.default = Done()
        for _ in range(200):
            await work.run_once()
            if all(row.state == OutboxState.DONE for row in all_rows(desk.db)):
                break
            await asyncio.sleep(0.02)

    asyncio.run(run())
    paused_lines = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("Slack delivery paused")
    ]
    assert len(paused_lines) == 1 and "token_revoked" in paused_lines[0]
    assert checks >= 1 and slack_paused(desk.db) is None
    assert {row.state for row in all_rows(desk.db)} == {OutboxState.DONE}
    # Paused attempts were not counted: each row was delivered on its first counted attempt.
    assert {row.attempts for row in all_rows(desk.db)} == {1}


def test_pause_set_by_another_process_is_honoured(desk: Desk) -> None:
    open_ticket(desk)
    set_slack_paused(desk.db, "token_revoked")
    performer = Recorder()

    async def never() -> bool:
        return False

    work = Worker(
        desk.db,
        {Kind.CARD.value: performer},
        {},
        token_check=never,
        worker_id="w",
        config=WorkerConfig(**FAST),
    )  # type: ignore[arg-type]
    asyncio.run(work.run_once())
    assert performer.seen == [] and all_rows(desk.db)[0].state == OutboxState.PENDING


def test_worker_ids_name_host_namespace_and_pid() -> None:
    worker_id = default_worker_id()
    prefix = local_prefix()
    assert worker_id.startswith(prefix) and len(worker_id) <= 80
    pid = holder_pid(worker_id, prefix)
    assert pid is not None and process_alive(pid)
    assert holder_pid("otherhost:123:45", prefix) is None


def test_a_worker_on_another_machine_with_the_same_host_name_is_not_judged_by_pid(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cloud host names often agree in their first 40 characters, or entirely, across machines; and
    # the root pid namespace has the same number on every Linux machine.
    open_ticket(desk)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that means nothing here: the other machine's worker is alive over there
    monkeypatch.setattr(worker_ids, "_machine", lambda: "0123456789ab")
    elsewhere = f"{local_prefix()}{gone.pid}"
    monkeypatch.undo()
    assert elsewhere.split(":")[0] == local_prefix().split(":")[0]
    outbox.claim_due(desk.db, elsewhere, lease=timedelta(hours=1))
    performer = Recorder()

    async def run() -> None:
        work = Worker(desk.db, {Kind.CARD.value: performer}, {}, config=WorkerConfig(**FAST))  # type: ignore[arg-type]
        task = asyncio.create_task(work.run())
        await asyncio.sleep(0.5)
        work.stop()
        await task

    asyncio.run(asyncio.wait_for(run(), timeout=10))
    (row,) = all_rows(desk.db)
    assert performer.seen == [] and (row.state, row.claimed_by) == (OutboxState.CLAIMED, elsewhere)


def test_rows_of_a_dead_worker_on_this_machine_are_given_back_at_start(desk: Desk) -> None:
    open_ticket(desk)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: the pid is free
    dead_id = f"{local_prefix()}{gone.pid}"
    outbox.claim_due(desk.db, dead_id, lease=timedelta(hours=1))
    performer = Recorder()
    # Its call may have been cut off mid-way: tried again only once a late effect would have landed.
    config = WorkerConfig(**{**FAST, "slack_settles_in": timedelta(seconds=0.3)})  # type: ignore[arg-type]

    async def run() -> None:
        work = Worker(desk.db, {Kind.CARD.value: performer}, {}, config=config)
        task = asyncio.create_task(work.run())
        while not performer.seen:
            await asyncio.sleep(0.01)
        work.stop()
        await task

    started = utcnow()
    asyncio.run(asyncio.wait_for(run(), timeout=10))
    (row,) = all_rows(desk.db)
    assert row.state == OutboxState.DONE and row.attempts == 2  # counted: its outcome was unknown
    assert row.done_at is not None and row.done_at >= started + config.slack_settles_in


def test_a_slack_row_given_back_mid_call_waits_what_a_timed_out_calls_retry_waits() -> None:
    """The two waits are for the same late effect of a Slack call: they must not drift apart."""
    from bot.app import SLACK_CALL_TIMEOUT_SECONDS
    from bot.delivery.calls import LATE_EFFECT_TIMEOUTS

    expected = timedelta(seconds=LATE_EFFECT_TIMEOUTS * SLACK_CALL_TIMEOUT_SECONDS)
    assert WorkerConfig().slack_settles_in == expected


def test_rows_given_back_mid_call_on_stop_come_back_apart_but_never_before_the_call_settled(
    desk: Desk,
) -> None:
    """A stop in the middle of a burst gave every row it cut off the same due time, exactly
    `slack_settles_in` later: they all came back in one instant. Each now has its own jitter on top
    of that floor (the floor is what keeps a cut-off post from being posted twice)."""
    for _ in range(6):
        open_ticket(desk)
    started: list[int] = []

    async def performer(item: OutboxItem) -> Outcome:
        started.append(item.id)
        await asyncio.Event().wait()  # a Slack call that never answers
        return Done()

    config = WorkerConfig(**{**FAST, "drain_timeout": 0.1})  # type: ignore[arg-type]

    async def run() -> None:
        work = Worker(desk.db, {Kind.CARD.value: performer}, {}, worker_id="w-test", config=config)
        task = asyncio.create_task(work.run())
        while len(started) < 6:
            await asyncio.sleep(0.01)
        work.stop()
        await asyncio.wait_for(task, timeout=5)

    stopped = utcnow()
    asyncio.run(run())
    rows = all_rows(desk.db)
    assert [(row.state, row.attempts) for row in rows] == [("pending", 1)] * 6
    due = [row.next_attempt_at for row in rows]
    assert all(at is not None and at >= stopped + config.slack_settles_in for at in due)
    assert len(set(due)) == 6, due
