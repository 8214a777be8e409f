"""After-commit wake-ups: told after the commit that made work claimable, never before, never on rollback."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from store import actions, inbound, outbox
from store.actions import Actor, DeskPolicy
from store.db import Database
from store.models import InboundItem, Origin, Outbox, utcnow
from store.outbox import Kind
from store.wakeups import Notice, Topic, on_loop


class Heard:
    """A subscriber that keeps every notice, and can look into the store as each one arrives."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.notices: list[Notice] = []
        self.intake_seen: list[int] = []
        self.outbox_seen: list[int] = []

    def __call__(self, notice: Notice) -> None:
        self.notices.append(notice)
        # A fresh transaction, as a woken worker's claim would be: the row must be there already.
        # A read: the notice comes while this thread still holds SQLite's write turn.
        with self.db.read() as session:
            self.intake_seen.append(len(session.scalars(select(InboundItem.id)).all()))
            self.outbox_seen.append(len(session.scalars(select(Outbox.id)).all()))

    def topics(self) -> list[set[Topic]]:
        return [set(notice.due) for notice in self.notices]


@pytest.fixture
def heard(db: Database) -> Heard:
    subscriber = Heard(db)
    db.wakeups.subscribe(subscriber)
    return subscriber


def test_an_accepted_intake_item_is_announced_after_its_commit(db: Database, heard: Heard) -> None:
    assert inbound.accept(db, "email", "k1", raw=b"x")
    assert heard.topics() == [{Topic.INTAKE}]
    assert heard.notices[0].due[Topic.INTAKE] == frozenset({None})  # due now
    assert heard.intake_seen == [1]  # the subscriber found the item it was told about


def test_a_duplicate_intake_item_is_not_announced(db: Database, heard: Heard) -> None:
    inbound.accept(db, "email", "k1", raw=b"x")
    assert not inbound.accept(db, "email", "k1", raw=b"x")  # skipped on the unique key
    assert len(heard.notices) == 1
    assert heard.notices[0].arrivals == 1


def test_inputs_stored_together_are_one_notice_counting_each_new_one(db: Database, heard: Heard) -> None:
    inbound.accept(db, "email", "k1", raw=b"x")
    arrivals = [inbound.Arrival("email", key, raw=b"x") for key in ("k2", "k1", "k3", "k2")]
    assert inbound.accept_all(db, arrivals) == [True, False, True, False]
    assert [notice.arrivals for notice in heard.notices] == [1, 2]
    assert heard.intake_seen == [1, 3]


def test_outbox_rows_are_announced_after_the_commit_once_per_transaction(db: Database, heard: Heard) -> None:
    with db.transaction() as session:
        outbox.enqueue(session, Kind.EMAIL, payload={"n": 1})
        outbox.enqueue(session, Kind.EMAIL, payload={"n": 2})
        assert heard.notices == []  # not before the commit
    assert heard.topics() == [{Topic.OUTBOX}]
    assert heard.outbox_seen == [2]


def test_a_rolled_back_transaction_announces_nothing(db: Database, heard: Heard) -> None:
    with pytest.raises(RuntimeError), db.transaction() as session:
        outbox.enqueue(session, Kind.EMAIL, payload={})
        session.flush()
        raise RuntimeError("the action failed")
    assert heard.notices == []
    # The next transaction of the session factory starts clean: no leftover mark is announced.
    with db.transaction() as session:
        session.scalars(select(Outbox.id)).all()
    assert heard.notices == []


def test_savepoints_neither_announce_early_nor_drop_what_was_marked_before(
    db: Database, heard: Heard
) -> None:
    with db.transaction() as session:
        outbox.enqueue(session, Kind.EMAIL)
        with session.begin_nested():  # released: the transaction has not committed yet
            session.execute(select(1))
        assert heard.notices == []
        savepoint = session.begin_nested()
        session.execute(select(1))
        savepoint.rollback()  # rolled back: the transaction goes on, its marks with it
    assert heard.topics() == [{Topic.OUTBOX}]
    assert heard.outbox_seen == [1]


def test_giving_back_nothing_announces_nothing(db: Database, heard: Heard) -> None:
    assert outbox.release(db, "w1") == 0
    inbound.release(db, "w1")
    assert heard.notices == []


def test_a_later_due_time_is_announced_with_the_soonest_first(db: Database, heard: Heard) -> None:
    soon = utcnow() + timedelta(seconds=10)
    with db.transaction() as session:
        outbox.enqueue(session, Kind.EMAIL, due_at=soon + timedelta(seconds=5))
        outbox.enqueue(session, Kind.EMAIL, due_at=soon)
        outbox.enqueue(session, Kind.REACTION)
    [notice] = heard.notices
    assert notice.due[Topic.OUTBOX] == frozenset({None, soon, soon + timedelta(seconds=5)})


def test_retries_releases_and_operator_retries_are_announced(db: Database, heard: Heard) -> None:
    with db.transaction() as session:
        outbox.enqueue(session, Kind.EMAIL)
    [item] = outbox.claim_due(db, "w1")
    assert len(heard.notices) == 1  # claiming makes nothing new claimable
    with db.transaction() as session:
        state = outbox.schedule_retry(session, item.id, "w1", "later", delay=timedelta(seconds=30))
    assert state == "pending"
    [later] = heard.notices[1].due[Topic.OUTBOX]
    assert later is not None and later > utcnow()
    assert outbox.claim_due(db, "w1") == []  # not due yet (the claim's "now" is its own)
    with db.transaction() as session:
        row = session.get(Outbox, item.id)
        assert row is not None
        row.next_attempt_at = utcnow()
    [item] = outbox.claim_due(db, "w1")
    outbox.release(db, "w1")
    assert heard.notices[-1].due == {Topic.OUTBOX: frozenset({None})}
    [item] = outbox.claim_due(db, "w1")
    with db.transaction() as session:
        assert outbox.mark_failed(session, item.id, "w1", "broken")
    count = len(heard.notices)
    assert outbox.retry_failed(db, item.id)
    assert len(heard.notices) == count + 1

    inbound.accept(db, "email", "k", raw=b"x")
    [work] = inbound.claim(db, "w1")
    assert inbound.give_up_or_retry(db, work.id, "w1", "boom") == "pending"
    [retry_at] = heard.notices[-1].due[Topic.INTAKE]
    assert retry_at is not None and retry_at > utcnow()


def test_a_row_leaving_its_lane_announces_the_lanes_next_row_only(db: Database, heard: Heard) -> None:
    lane = outbox.triage_lane(7)
    later = utcnow() + timedelta(seconds=30)
    with db.transaction() as session:
        outbox.enqueue(session, Kind.CARD, lane=lane)
        outbox.enqueue(session, Kind.THREAD_POST, lane=lane)
        outbox.enqueue(session, Kind.THREAD_LINE, lane=lane, due_at=later)
        outbox.enqueue(session, Kind.EMAIL, lane="mail:someone@example.com")
    card, email = outbox.claim_due(db, "w1")  # the post waits behind the card
    assert (card.kind, email.kind) == (Kind.CARD, Kind.EMAIL)
    count = len(heard.notices)

    with db.transaction() as session:
        assert outbox.mark_done(session, email.id, "w1")
    assert len(heard.notices) == count  # nothing waits behind the email

    with db.transaction() as session:
        assert outbox.mark_done(session, card.id, "w1")
    [due] = heard.notices[-1].due[Topic.OUTBOX]
    assert due is not None and due <= utcnow()  # the post, due already
    [post] = outbox.claim_due(db, "w1")
    assert post.kind == Kind.THREAD_POST

    # A failed row moves its lane on too; the next row's own due time is what is announced.
    with db.transaction() as session:
        assert outbox.mark_failed(session, post.id, "w1", "gone")
    [due] = heard.notices[-1].due[Topic.OUTBOX]
    assert due == later


def test_cancelling_a_waiting_reply_announces_what_its_lane_held_back(db: Database, heard: Heard) -> None:
    policy = DeskPolicy(triage_channel="C0TRIAGE", reply_delay=timedelta(seconds=10))
    alice = Actor("alice", slack_id="U0ALICE")
    with db.transaction() as session:
        customer = actions.customer_for_email(session, "dan@globex.example", "Dan")
        ticket = actions.open_ticket(
            session, policy, subject="x", requester=customer, origin=Origin.EMAIL, actor=alice
        )
        reply = actions.add_staff_reply(
            session,
            policy,
            ticket,
            author=alice,
            body_markdown="Try this",
            slack_channel="C0TRIAGE",
            slack_ts="1.1",
        )
        reply_id = reply.id
    count = len(heard.notices)
    with db.transaction() as session:
        assert outbox.cancel_for_message(session, reply_id) == 1
    assert len(heard.notices) == count + 1
    with db.transaction() as session:
        assert outbox.cancel_for_message(session, reply_id) == 0  # nothing left to cancel: no notice
    assert len(heard.notices) == count + 1


def test_a_failing_subscriber_does_not_fail_the_commit(db: Database, heard: Heard) -> None:
    def broken(_notice: Notice) -> None:
        raise RuntimeError("subscriber bug")

    db.wakeups.subscribe(broken)
    assert inbound.accept(db, "email", "k1", raw=b"x")  # committed, and says so
    assert heard.intake_seen == [1]


def test_unsubscribed_hears_nothing(db: Database) -> None:
    notices: list[Notice] = []
    unsubscribe = db.wakeups.subscribe(notices.append)
    unsubscribe()
    inbound.accept(db, "email", "k1", raw=b"x")
    assert notices == []


def test_a_commit_on_another_thread_wakes_a_waiter_on_the_loop(db: Database) -> None:
    async def main() -> Notice:
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[Notice] = loop.create_future()
        seen_on: list[threading.Thread] = []

        def on_loop_thread(notice: Notice) -> None:
            seen_on.append(threading.current_thread())
            if not arrived.done():
                arrived.set_result(notice)

        db.wakeups.subscribe(on_loop(loop, on_loop_thread))
        await asyncio.to_thread(inbound.accept, db, "email", "k1", raw=b"x")
        notice = await asyncio.wait_for(arrived, timeout=20)
        assert seen_on == [threading.current_thread()]  # handed over to the loop's own thread
        return notice

    assert Topic.INTAKE in asyncio.run(main()).due
