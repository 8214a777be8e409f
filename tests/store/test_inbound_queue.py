"""The intake queue: stored once per key, claimed under a lease, retried with backoff, kept on failure."""

from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy import select

from store import inbound
from store.models import InboundItem, Outbox


def test_the_same_key_is_stored_once(db):
    assert inbound.accept(db, "email", "email:a@b", payload={"n": 1}, raw=b"x")
    assert not inbound.accept(db, "email", "email:a@b", payload={"n": 2}, raw=b"y")
    assert inbound.seen(db, "email:a@b")


def test_inputs_stored_together_keep_their_own_answers_and_contents(db):
    inbound.accept(db, "email", "email:old", raw=b"old")
    arrivals = [
        inbound.Arrival("email", "email:a", payload={"n": 1}, raw=b"a", lane="email:x"),
        inbound.Arrival("email", "email:old", raw=b"changed"),
        inbound.Arrival("slack_event", "e1", payload={"n": 2}),
        inbound.Arrival("email", "email:a", raw=b"second copy"),
    ]
    assert inbound.accept_all(db, arrivals) == [True, False, True, False]
    with db.read() as session:
        rows = {item.dedupe_key: item for item in session.query(InboundItem)}
        assert sorted(rows) == ["e1", "email:a", "email:old"]
        first = rows["email:a"]
        assert (first.raw, first.payload, first.lane) == (b"a", {"n": 1}, "email:x")
        assert rows["email:old"].raw == b"old"
        assert (rows["e1"].kind, rows["e1"].payload, rows["e1"].raw) == ("slack_event", {"n": 2}, None)


def test_items_of_one_lane_are_handled_in_order(db):
    inbound.accept(db, "slack_event", "e1", lane="slack:C1")
    inbound.accept(db, "slack_event", "e2", lane="slack:C1")
    inbound.accept(db, "slack_event", "e3", lane="slack:C2")
    first = inbound.claim(db, "w1")
    assert sorted(w.id for w in first) == [1, 3]
    with db.transaction() as session:
        assert inbound.finish(session, 1, "w1")
    assert [w.id for w in inbound.claim(db, "w1")] == [2]


def test_a_failed_item_waits_with_backoff_then_fails_for_good(db):
    with freeze_time("2026-01-01 12:00:00") as clock:
        inbound.accept(db, "email", "k", raw=b"x")
        for attempt in range(1, inbound.MAX_ATTEMPTS + 1):
            [work] = inbound.claim(db, "w1")
            assert work.attempts == attempt
            state = inbound.give_up_or_retry(db, work.id, "w1", "boom")
            if attempt < inbound.MAX_ATTEMPTS:
                assert state == "pending"
                assert inbound.claim(db, "w1") == []  # not before its backoff has passed
                clock.tick(timedelta(minutes=10))
        assert state == "failed"
        assert inbound.claim(db, "w1") == []
    with db.transaction() as session:
        item = session.get(InboundItem, work.id)
        assert item is not None and item.last_error == "boom" and item.raw == b"x"


def fail_for_good(db, kind="email", payload=None, error="boom"):
    with freeze_time("2026-01-01 12:00:00") as clock:
        inbound.accept(db, kind, f"{kind}:1", payload=payload, raw=b"raw bytes")
        for _attempt in range(inbound.MAX_ATTEMPTS):
            [work] = inbound.claim(db, "w1")
            inbound.give_up_or_retry(db, work.id, "w1", error)
            clock.tick(timedelta(minutes=10))
    return work.id


def test_an_item_that_fails_for_good_is_told_in_the_triage_channel_once(db):
    item_id = fail_for_good(
        db, payload={"mail_from": "<!channel>@evil.example"}, error="DataError: bad\nsecond line"
    )
    with db.read() as session:
        [notice] = session.scalars(select(Outbox)).all()
        assert (notice.kind, notice.ticket_id, notice.lane) == ("slack.desk_notice", None, "triage:desk")
        text = notice.payload["text"]
    assert "An incoming email from &lt;!channel&gt;@evil.example could not be turned into a ticket" in text
    assert "after 5 attempts (DataError: bad)" in text
    assert f"`servicedesk outbox --retry-intake {item_id}`" in text


def test_a_failed_item_tried_again_is_due_at_once_with_its_attempts_afresh(db):
    item_id = fail_for_good(db, kind="slack_event")
    assert inbound.failed_items(db, limit=10)[1] == 1
    assert inbound.retry_failed_item(db, item_id)
    assert not inbound.retry_failed_item(db, item_id)  # no longer failed
    assert not inbound.retry_failed_item(db, item_id + 1)  # no such item
    [work] = inbound.claim(db, "w1")
    assert (work.id, work.attempts, work.raw) == (item_id, 1, b"raw bytes")
    assert inbound.failed_items(db, limit=10) == ([], 0)


def test_an_expired_lease_lets_another_worker_take_the_item(db):
    with freeze_time("2026-01-01 12:00:00") as clock:
        inbound.accept(db, "email", "k", raw=b"x")
        [mine] = inbound.claim(db, "w1", lease=timedelta(seconds=30))
        assert inbound.claim(db, "w2") == []
        clock.tick(timedelta(seconds=31))
        [theirs] = inbound.claim(db, "w2")
        assert theirs.id == mine.id
        with db.transaction() as session:
            assert not inbound.finish(session, mine.id, "w1")  # the first worker lost it
            assert inbound.finish(session, theirs.id, "w2")


def test_one_claim_statement_serves_any_kinds_and_limit(db):
    # The statement is built once and run with parameters: each call's kinds and limit must hold.
    for number in range(3):
        inbound.accept(db, "email", f"mail{number}", lane=f"sender{number}")
        inbound.accept(db, "slack_event", f"event{number}", lane=f"channel{number}")
    mails = inbound.claim(db, "w1", kinds=frozenset({"email"}), limit=2)
    assert [w.kind for w in mails] == ["email", "email"]
    events = inbound.claim(db, "w1", kinds=frozenset({"slack_event"}), limit=5)
    assert [w.kind for w in events] == ["slack_event"] * 3
    assert [w.kind for w in inbound.claim(db, "w1", kinds=None)] == ["email"]
    assert inbound.claim(db, "w1", kinds=frozenset({"email", "slack_event"})) == []


def test_a_finished_item_is_not_reopened_by_a_late_failure(db):
    # A handler that raised after its transaction had committed: the item stays done, run once.
    inbound.accept(db, "email", "k1", raw=b"x")
    (work,) = inbound.claim(db, "w1")
    with db.transaction() as session:
        assert inbound.finish(session, work.id, "w1")
    assert inbound.give_up_or_retry(db, work.id, "w1", "RuntimeError: after the commit") == "lost"
    with db.transaction() as session:
        item = session.get(InboundItem, work.id)
        assert item is not None
        assert (item.state, item.last_error) == ("done", None)
    assert inbound.claim(db, "w1") == []
