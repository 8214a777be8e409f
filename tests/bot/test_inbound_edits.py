"""Edits and deletions of messages the desk holds, and duplicate deliveries of the same message."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from bot.commands.base import lock_tickets
from bot.worker_settle import settle
from sandbox.workspace import ALICE, CONNECT, DAN, ERIN, TRIAGE
from store import actions, outbox
from store.actions import Actor
from store.models import Delivery, Message, Outbox, OutboxState, Ticket, Visibility, utcnow
from store.outcomes import Done
from tests.bot.inbound_harness import (  # noqa: F401 (fixtures)
    Intake,
    all_done,
    emulator_fixture,
    intake_fixture,
    open_connect_ticket,
    triage_thread,
)
from tests.conftest import POSTGRES_URL, lock_waits
from tests.e2e.conftest import wait_until

STAFF = Actor("Alice Agent", slack_id=ALICE)


def staff_reply(intake: Intake, text: str = "Try the *reset* button") -> str:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    ts = intake.emulator.user_post(ALICE, TRIAGE, text, thread_ts=card)
    intake.run()
    return ts


def pretend_delivered(intake: Intake, message_id: int, mirror_ts: str | None = None) -> None:
    """What the delivery performers would have done by now."""
    with intake.db.transaction() as session:
        message = session.get(Message, message_id)
        assert message is not None
        message.delivery = Delivery.DELIVERED
        message.deliver_after = utcnow() - timedelta(seconds=1)
        message.mirror_channel = CONNECT if mirror_ts else None
        message.mirror_ts = mirror_ts
        for row in session.query(Outbox).filter(Outbox.message_id == message_id):
            row.state = OutboxState.DONE
            if mirror_ts and row.kind == "slack.origin_post":
                row.result = {"ts": mirror_ts, "ts:0": mirror_ts}  # as the performer records its post


def test_an_edit_inside_the_delay_changes_what_is_sent(intake: Intake) -> None:
    ts = staff_reply(intake)
    intake.emulator.user_edit(ALICE, TRIAGE, ts, "Try the *power* button")
    intake.run()
    reply = intake.messages()[-1]
    assert reply.body_markdown == "Try the **power** button"
    assert reply.edited_at is not None and reply.delivery == Delivery.PENDING
    [post] = intake.outbox("slack.origin_post")
    assert post.state == OutboxState.PENDING
    assert all_done(intake)


def test_an_edit_adding_note_makes_the_reply_a_note(intake: Intake) -> None:
    ts = staff_reply(intake)
    intake.emulator.user_edit(ALICE, TRIAGE, ts, "note: they should try the reset button")
    intake.run()
    note = intake.messages()[-1]
    assert note.visibility == Visibility.INTERNAL and note.delivery == Delivery.CANCELLED
    assert note.body_markdown == "they should try the reset button"
    [post] = intake.outbox("slack.origin_post")
    assert post.state == OutboxState.CANCELLED
    marker = intake.outbox("slack.reaction")[-1]
    assert marker.payload["add"] == "lock" and marker.payload["remove"] == "hourglass_flowing_sand"


def ticket_status(intake: Intake) -> str:
    [ticket] = intake.tickets()
    return ticket.status


def test_an_edit_into_a_command_takes_the_reply_back_and_runs_the_command(intake: Intake) -> None:
    ts = staff_reply(intake, "Closing this now")
    intake.emulator.user_edit(ALICE, TRIAGE, ts, "!close")
    intake.run()
    withdrawn = intake.messages()[-1]
    assert withdrawn.visibility == Visibility.INTERNAL and withdrawn.delivery == Delivery.CANCELLED
    [post] = intake.outbox("slack.origin_post")
    assert post.state == OutboxState.CANCELLED
    marker = intake.outbox("slack.reaction")[-1]
    assert "add" not in marker.payload or marker.payload["add"] is None
    assert marker.payload["remove"] == "hourglass_flowing_sand"
    assert ticket_status(intake) == "closed"
    # A second delivery of the same edit runs nothing again.
    intake.emulator.user_edit(ALICE, TRIAGE, ts, "!reopen")
    intake.run()
    assert ticket_status(intake) == "closed"


def test_a_delete_inside_the_delay_cancels_the_reply(intake: Intake) -> None:
    ts = staff_reply(intake)
    intake.emulator.user_delete(ALICE, TRIAGE, ts)
    intake.run()
    reply = intake.messages()[-1]
    assert reply.deleted_at is not None and reply.delivery == Delivery.CANCELLED
    [post] = intake.outbox("slack.origin_post")
    assert post.state == OutboxState.CANCELLED


def set_reply_rows(intake: Intake, **values: object) -> None:
    """Put the reply's Slack delivery where a worker would have it now."""
    with intake.db.transaction() as session:
        for row in session.query(Outbox).filter(Outbox.kind == "slack.origin_post"):
            for name, value in values.items():
                setattr(row, name, value)


def claimed_by_a_worker(intake: Intake) -> None:
    """The undo window just closed: a worker holds the reply's delivery and may be sending it."""
    until = utcnow() + timedelta(minutes=2)
    set_reply_rows(intake, state=OutboxState.CLAIMED, claimed_by="worker-1", claimed_until=until)


def posted_while_others_wait(intake: Intake) -> None:
    """One of the reply's deliveries is done (its copy posted); the reply waits for the others."""
    posted = {"ts": "1700000999.000100", "ts:0": "1700000999.000100"}
    set_reply_rows(intake, state=OutboxState.DONE, result=posted)


def held_back_after_the_window(intake: Intake) -> None:
    """The window has closed, but Slack answered the reply's post with a 429: it waits, with no one."""
    reply_id = intake.messages()[-1].id
    with intake.db.transaction() as session:
        reply = session.get(Message, reply_id)
        assert reply is not None
        reply.deliver_after = utcnow() - timedelta(minutes=1)
    later = utcnow() + timedelta(minutes=1)
    set_reply_rows(intake, attempts=1, next_attempt_at=later, last_error="ratelimited")


def test_a_reply_held_back_after_its_window_can_still_become_a_note(intake: Intake) -> None:
    ts = staff_reply(intake)
    held_back_after_the_window(intake)
    intake.emulator.user_edit(ALICE, TRIAGE, ts, "note: they should try the reset button")
    intake.run()
    reply = intake.messages()[-1]
    assert reply.visibility == Visibility.INTERNAL and reply.delivery == Delivery.CANCELLED
    [post] = intake.outbox("slack.origin_post")
    assert post.state == OutboxState.CANCELLED  # it never reaches the customer
    assert not any("cannot become a note" in text for text in thread_texts(intake))


def thread_texts(intake: Intake) -> list[str]:
    return [str(row.payload.get("text")) for row in intake.outbox("slack.thread_line")]


@pytest.mark.parametrize(
    ("meanwhile", "row_state"),
    [(claimed_by_a_worker, OutboxState.CLAIMED), (posted_while_others_wait, OutboxState.DONE)],
)
def test_a_reply_on_its_way_does_not_become_a_note(
    intake: Intake, meanwhile: Callable[[Intake], None], row_state: OutboxState
) -> None:
    ts = staff_reply(intake)
    meanwhile(intake)
    intake.emulator.user_edit(ALICE, TRIAGE, ts, "note: they should try the reset button")
    intake.run()
    reply = intake.messages()[-1]
    # Still the public reply it is being sent as, and the team is told why.
    assert reply.visibility == Visibility.PUBLIC and reply.delivery == Delivery.PENDING
    assert reply.body_markdown == "Try the **reset** button"
    [post] = intake.outbox("slack.origin_post")
    assert post.state == row_state
    assert "That reply is being delivered; it cannot become a note now." in thread_texts(intake)


def delivered_with_a_copy(intake: Intake) -> None:
    pretend_delivered(intake, intake.messages()[-1].id, mirror_ts="1700000999.000100")


@pytest.mark.parametrize(
    ("meanwhile", "state"),
    [(claimed_by_a_worker, "is being delivered"), (delivered_with_a_copy, "was already delivered")],
)
def test_a_reply_on_its_way_edited_into_a_command_stays_and_runs_nothing(
    intake: Intake, meanwhile: Callable[[Intake], None], state: str
) -> None:
    ts = staff_reply(intake, "Closing this now")
    meanwhile(intake)
    intake.emulator.user_edit(ALICE, TRIAGE, ts, "!close")
    intake.run()
    reply = intake.messages()[-1]
    assert reply.visibility == Visibility.PUBLIC and reply.body_markdown == "Closing this now"
    assert ticket_status(intake) == "open"
    assert intake.outbox("slack.mirror_update") == []  # the command is not shown to the customer
    assert any(
        f"That reply {state}" in text and "cannot become a command" in text for text in thread_texts(intake)
    )


def test_a_reply_deleted_while_a_worker_is_sending_it_says_so(intake: Intake) -> None:
    ts = staff_reply(intake)
    claimed_by_a_worker(intake)
    intake.emulator.user_delete(ALICE, TRIAGE, ts)
    intake.run()
    reply = intake.messages()[-1]
    assert reply.deleted_at is not None and reply.delivery == Delivery.PENDING
    [post] = intake.outbox("slack.origin_post")
    assert post.state == OutboxState.CLAIMED  # its performer skips a reply it reads as deleted
    assert "Deleted while it was being delivered: the customer may have it." in thread_texts(intake)


def test_an_edit_after_delivery_is_mirrored_to_the_customers_thread(intake: Intake) -> None:
    ts = staff_reply(intake)
    reply = intake.messages()[-1]
    pretend_delivered(intake, reply.id, mirror_ts="1700000999.000100")
    intake.emulator.user_edit(ALICE, TRIAGE, ts, "Try the *blue* button")
    intake.run()
    [update] = intake.outbox("slack.mirror_update")
    assert update.message_id == reply.id and update.state == OutboxState.PENDING
    assert intake.messages()[-1].body_markdown == "Try the **blue** button"


def test_a_delete_after_delivery_is_mirrored_to_the_customers_thread(intake: Intake) -> None:
    ts = staff_reply(intake)
    reply = intake.messages()[-1]
    pretend_delivered(intake, reply.id, mirror_ts="1700000999.000100")
    intake.emulator.user_delete(ALICE, TRIAGE, ts)
    intake.run()
    [delete] = intake.outbox("slack.mirror_delete")
    assert delete.message_id == reply.id


def test_a_customer_edit_is_mirrored_into_the_triage_thread(intake: Intake) -> None:
    ts = open_connect_ticket(intake)
    [message] = intake.messages()
    with intake.db.transaction() as session:
        stored = session.get(Message, message.id)
        assert stored is not None
        stored.mirror_channel, stored.mirror_ts = TRIAGE, "1700000888.000100"
    intake.emulator.user_edit(DAN, CONNECT, ts, "Printer is *smoking*")
    intake.run()
    assert intake.messages()[0].body_markdown == "Printer is **smoking**"
    [update] = intake.outbox("slack.mirror_update")
    assert update.lane == f"mirror:{message.id}"  # its own: a held chat.update holds no post back


def test_an_unchanged_edit_does_nothing(intake: Intake) -> None:
    ts = staff_reply(intake)
    before = len(intake.outbox())
    intake.emulator.user_edit(ALICE, TRIAGE, ts, "Try the *reset* button")
    intake.run()
    assert len(intake.outbox()) == before
    assert intake.messages()[-1].edited_at is None


def test_the_same_event_delivered_twice_is_dropped_at_the_edge(intake: Intake) -> None:
    intake.emulator.user_post(DAN, CONNECT, "Printer broken")
    [envelope] = intake.emulator.events
    assert intake.store(copy.deepcopy(envelope)) is True
    assert intake.store(copy.deepcopy(envelope)) is False
    intake.fed = 1
    intake.run()
    assert len(intake.tickets()) == 1


def test_the_same_message_under_another_event_id_changes_nothing(intake: Intake) -> None:
    intake.emulator.user_post(DAN, CONNECT, "Printer broken")
    [envelope] = intake.emulator.events
    again = copy.deepcopy(envelope)
    again["event_id"] = "Ev0SECONDCOPY"
    intake.run()
    intake.store(again)
    intake.run()
    assert len(intake.tickets()) == 1 and len(intake.messages()) == 1
    assert intake.intake_states() == ["done", "done"]


def test_a_staff_reply_processed_twice_is_stored_once(intake: Intake) -> None:
    staff_reply(intake)
    reply_event = copy.deepcopy(intake.emulator.events[-1])
    reply_event["event_id"] = "Ev0REPLYAGAIN"
    intake.store(reply_event)
    intake.run()
    assert len(intake.messages()) == 2
    assert len(intake.outbox("slack.origin_post")) == 1


def store_in_reverse(intake: Intake, count: int) -> None:
    """The last `count` events, stored newest first: Slack's deliveries can overtake each other."""
    events = intake.emulator.events
    for envelope in reversed(events[-count:]):
        intake.store(envelope)
    for envelope in events[intake.fed : len(events) - count]:
        intake.store(envelope)
    intake.fed = len(events)
    intake.run()


@pytest.mark.parametrize(
    ("written", "edited"),
    [
        ("Their contract ends soon", "note: their contract ends soon"),
        # Had the note arrived first it would stay a note (an edit never makes a note public).
        ("note: their contract ends soon", "their contract ends soon"),
    ],
    ids=["edit makes a note", "note edited"],
)
def test_an_edit_that_overtakes_its_message_is_taken_as_the_message(
    intake: Intake, written: str, edited: str
) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    ts = intake.emulator.user_post(ALICE, TRIAGE, written, thread_ts=card)
    intake.emulator.user_edit(ALICE, TRIAGE, ts, edited)
    store_in_reverse(intake, 2)
    note = intake.messages()[-1]
    assert (note.slack_ts, note.visibility) == (ts, Visibility.INTERNAL)
    assert note.body_markdown == "their contract ends soon"
    assert len(intake.messages()) == 2 and intake.outbox("slack.origin_post") == []
    assert intake.outbox("email.send") == []
    assert all_done(intake)


def test_a_deletion_that_overtakes_its_message_drops_it(intake: Intake) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    ts = intake.emulator.user_post(ALICE, TRIAGE, "Wrong ticket, sorry", thread_ts=card)
    intake.emulator.user_delete(ALICE, TRIAGE, ts)
    store_in_reverse(intake, 2)
    assert len(intake.messages()) == 1
    assert intake.outbox("slack.origin_post") == []


def test_an_edit_of_an_old_message_we_never_held_is_ignored(intake: Intake) -> None:
    ts = intake.emulator.user_post(DAN, CONNECT, "Posted before the desk watched this channel")
    intake.fed = len(intake.emulator.events)  # never delivered to us
    with intake.emulator.state.lock:
        message = intake.emulator.state.find_message(CONNECT, ts)
        assert message is not None
        message.ts = "1600000000.000100"  # long ago
        intake.emulator.state.messages[CONNECT]["1600000000.000100"] = message
    intake.emulator.user_edit(DAN, CONNECT, "1600000000.000100", "An old message, edited")
    intake.run()
    assert intake.tickets() == []
    assert all_done(intake)


def test_a_reply_that_overtakes_the_request_brings_the_request_in_with_it(intake: Intake) -> None:
    root = intake.emulator.user_post(DAN, CONNECT, "Printer broken")
    intake.emulator.user_post(ERIN, CONNECT, "Mine too", thread_ts=root)
    store_in_reverse(intake, 2)
    [ticket] = intake.tickets()
    assert (ticket.origin_thread_ts, ticket.subject) == (root, "Printer broken")
    assert [m.body_markdown for m in intake.messages()] == ["Printer broken", "Mine too"]
    assert [row.kind for row in intake.outbox()].count("slack.origin_ack") == 1
    assert all_done(intake)


def test_a_reply_in_a_staff_thread_that_belongs_to_no_ticket_still_opens_nothing(intake: Intake) -> None:
    root = intake.emulator.user_post(ALICE, CONNECT, "Maintenance tonight")
    intake.emulator.user_post(DAN, CONNECT, "Thanks", thread_ts=root)
    store_in_reverse(intake, 2)
    assert intake.tickets() == []


def customer_message_copied(intake: Intake) -> tuple[str, str, int]:
    """A customer's message whose copy is in the triage thread: who wrote it, where, and its id."""
    open_connect_ticket(intake)
    [message] = intake.messages()
    with intake.db.transaction() as session:
        stored = session.get(Message, message.id)
        assert stored is not None
        stored.mirror_channel, stored.mirror_ts = TRIAGE, "1700000888.000100"
    return DAN, CONNECT, message.id


def staff_reply_delivered(intake: Intake) -> tuple[str, str, int]:
    """A staff reply whose copy is in the customer's thread."""
    staff_reply(intake)
    reply = intake.messages()[-1]
    pretend_delivered(intake, reply.id, mirror_ts="1700000999.000100")
    return ALICE, TRIAGE, reply.id


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("written", [customer_message_copied, staff_reply_delivered])
@pytest.mark.parametrize("deleted", [False, True], ids=["edited", "deleted"])
def test_a_change_to_a_message_while_its_ticket_is_merged_waits_its_turn(
    intake: Intake, written: Callable[[Intake], tuple[str, str, int]], deleted: bool
) -> None:
    """PostgreSQL: `!merge` locks both tickets, then moves their messages. An edit or deletion of
    one of those messages locks its ticket before the message too, so one waits for the other
    (taking the message first, it deadlocked with the merge and one of the two was undone)."""
    author, channel, message_id = written(intake)
    [source] = intake.tickets()
    intake.emulator.user_post(ERIN, CONNECT, "The scanner as well")
    intake.run()
    target = intake.tickets()[1]
    ts = next(m.slack_ts for m in intake.messages() if m.id == message_id)
    assert ts is not None
    if deleted:
        intake.emulator.user_delete(author, channel, ts)
    else:
        intake.emulator.user_edit(author, channel, ts, "Printer is *smoking*")
    tickets_locked, failures = threading.Event(), []

    def merge() -> None:
        try:
            with intake.db.transaction() as session:
                found = lock_tickets(session, [source.number, target.number])  # as `!merge` does
                tickets_locked.set()
                wait_until(lambda: lock_waits(intake.db) > 0, "the change to wait for the merge")
                actions.merge(session, intake.desk.policy, found[source.number], found[target.number], STAFF)
        except Exception as error:  # a deadlock, reported by the assertion below
            failures.append(f"merge: {error}")

    merging = threading.Thread(target=merge)
    merging.start()
    assert tickets_locked.wait(30)
    intake.run()
    merging.join(60)
    assert failures == []
    assert all_done(intake)  # the change was applied, not undone and left for a retry
    [mirrored] = intake.outbox("slack.mirror_delete" if deleted else "slack.mirror_update")
    assert mirrored.message_id == message_id
    moved = next(m for m in intake.messages() if m.id == message_id)
    assert moved.ticket_id == target.id
    assert (moved.deleted_at is not None) if deleted else moved.body_markdown == "Printer is **smoking**"


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_an_edit_follows_its_message_down_a_chain_of_merges(intake: Intake) -> None:
    """PostgreSQL: #1 is merged into #2 while an edit of its message waits, and #2 into #3 as the
    edit follows the message to #2. The edit locks the message only once it is on the ticket it
    holds (holding the message while it waited for #2, it deadlocked with the second merge)."""
    _author, _channel, message_id = customer_message_copied(intake)
    for text in ("The scanner as well", "And the fax"):
        intake.emulator.user_post(ERIN, CONNECT, text)
        intake.run()
    one, two, three = intake.tickets()
    ts = next(m.slack_ts for m in intake.messages() if m.id == message_id)
    assert ts is not None
    intake.emulator.user_edit(DAN, CONNECT, ts, "Printer is *smoking*")
    failures: list[str] = []
    first_holds = threading.Event()

    def merge(source: Ticket, target: Ticket, waiting: int) -> None:
        try:
            with intake.db.transaction() as session:
                found = lock_tickets(session, [source.number, target.number])
                first_holds.set()
                wait_until(lambda: lock_waits(intake.db) >= waiting, "the others to wait for this merge")
                actions.merge(session, intake.desk.policy, found[source.number], found[target.number], STAFF)
        except (Exception, pytest.fail.Exception) as error:  # a deadlock, or a wait that never came
            failures.append(f"merging #{source.number}: {error}")

    # The first merge holds #1 and #2 until the second merge waits for #2 and the edit for #1. The
    # second, once it holds #2 and #3, waits for the edit to wait for #2.
    merges = [
        threading.Thread(target=merge, args=(one, two, 2)),
        threading.Thread(target=merge, args=(two, three, 1)),
    ]
    merges[0].start()
    assert first_holds.wait(30)
    merges[1].start()
    wait_until(lambda: lock_waits(intake.db) >= 1, "the second merge to wait for the first")
    intake.run()
    for thread in merges:
        thread.join(60)
    assert failures == []
    assert all_done(intake)
    moved = next(m for m in intake.messages() if m.id == message_id)
    assert moved.ticket_id == three.id and moved.body_markdown == "Printer is **smoking**"


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
def test_an_edit_while_a_delivery_of_the_reply_settles_takes_turns(intake: Intake) -> None:
    """PostgreSQL: a worker settling one of a reply's deliveries locks that row, then the ticket,
    then the reply. An edit of the reply locks the reply's deliveries before its ticket and the
    reply, so the two take turns (locking the ticket and reply first, it would then wait for the
    row the settle holds while the settle waits for the ticket: a deadlock)."""
    ts = staff_reply(intake)
    reply = intake.messages()[-1]
    with intake.db.transaction() as session:
        for row in session.scalars(select(Outbox)):
            if row.message_id == reply.id and row.kind == "slack.origin_post":
                row.next_attempt_at = utcnow() - timedelta(seconds=1)  # the window closed as the edit came
            else:
                row.state = OutboxState.DONE  # the card and the acknowledgement, out of the way
    [item] = outbox.claim_due(intake.db, "worker-1", kinds=frozenset({"slack.origin_post"}))
    settled: list[str] = []
    settle_holds_the_row = threading.Event()

    def hold_before_the_ticket(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        ticket_lock = "FROM tickets" in statement and "FOR NO KEY UPDATE" in statement
        if threading.current_thread().name == "settle" and ticket_lock and not settle_holds_the_row.is_set():
            settle_holds_the_row.set()  # the row is done and locked; the ticket and reply are not yet
            wait_until(lambda: lock_waits(intake.db) > 0, "the edit to wait for the settle")

    def settle_the_post() -> None:
        try:
            posted = {"ts": "1700000999.000100", "ts:0": "1700000999.000100"}
            settled.append(settle(intake.db, "worker-1", item, Done(result=posted)))
        except Exception as error:  # a deadlock, reported by the assertion below
            settled.append(f"failed: {error}")

    settling = threading.Thread(target=settle_the_post, name="settle")
    event.listen(intake.db.engine, "before_cursor_execute", hold_before_the_ticket)
    try:
        settling.start()
        assert settle_holds_the_row.wait(30)
        intake.emulator.user_edit(ALICE, TRIAGE, ts, "note: they should try the reset button")
        intake.run()
        settling.join(60)
    finally:
        event.remove(intake.db.engine, "before_cursor_execute", hold_before_the_ticket)
    assert settled == ["done"]
    assert all_done(intake)
    reply = intake.messages()[-1]
    assert reply.visibility == Visibility.PUBLIC and reply.delivery == Delivery.DELIVERED
    assert "That reply was already delivered; it cannot become a note now." in thread_texts(intake)
