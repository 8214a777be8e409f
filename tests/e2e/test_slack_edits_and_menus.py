"""Staff edits and card presses whose outcome was not what their author would expect, driven
through signed events and card presses into the running service."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from sqlalchemy import select

from sandbox.faults import Fault
from sandbox.state import Message as SlackMessage
from sandbox.workspace import ALICE, BOB, CAROL, CONNECT, DAN, HELP, TRIAGE
from store.models import Customer, Outbox, OutboxState, Visibility
from store.outbox import Kind
from tests.e2e.conftest import StartService
from tests.e2e.test_slack import REPLY_DELAY, Desk, customer_sees, delivered_marker, open_ticket

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def desk(start_service: StartService) -> Desk:
    return Desk(start_service(intake_channels=(CONNECT, HELP), reply_delay_seconds=REPLY_DELAY))


def test_a_note_edited_into_a_command_stays_a_note_and_its_author_is_told(desk: Desk) -> None:
    """`note: x` edited to `!close`: a note is never run as a command by an edit (it was written
    as a note), so the author, who sees `!close` in the thread and the ticket still open, is told
    it was not run and to type it as a new message."""
    customer_ts, card_ts = open_ticket(desk)
    note_ts = desk.emulator.user_post(ALICE, TRIAGE, "note: closing soon", thread_ts=card_ts)
    desk.wait(lambda: "lock" in desk.reactions(TRIAGE, note_ts), "the note marker")
    desk.idle()
    desk.emulator.user_edit(ALICE, TRIAGE, note_ts, "!close")
    desk.wait(
        lambda: [e for e in desk.emulator.ephemerals(TRIAGE, ALICE) if "new message" in e.text],
        "the author to be told the command was not run",
    )
    delivered_marker(desk, customer_ts, card_ts)
    ticket = desk.ticket(1)
    assert ticket is not None and ticket.status == "open"
    note = desk.message_at(TRIAGE, note_ts)
    assert note is not None and note.visibility == Visibility.INTERNAL
    assert not any("close" in text for text in customer_sees(desk, customer_ts))


def _assignee_cleared(card: SlackMessage) -> dict[str, Any]:
    """The assignee picker emptied on `card` as its presser saw it: no `selected_user`."""
    block_id = next(b["block_id"] for b in card.blocks or [] if b.get("type") == "actions")
    return {"action_id": "ticket_assignee", "block_id": block_id, "type": "users_select", "action_ts": "1.1"}


def test_clearing_the_assignee_on_a_stale_card_does_not_unassign_someone_the_presser_never_saw(
    desk: Desk,
) -> None:
    """Alice's card still shows herself as the owner when Bob has just taken the ticket: her
    clearing the picker meant "not me", not "not Bob". Nothing changes and she is told who owns it
    now; clearing it on the card as it now is still unassigns."""
    _customer_ts, card_ts = open_ticket(desk)
    desk.emulator.user_block_action(ALICE, TRIAGE, card_ts, "ticket_assignee", ALICE).wait(10)
    desk.wait(lambda: (t := desk.ticket(1)) is not None and t.assignee_slack_id == ALICE, "Alice assigned")
    desk.wait(
        lambda: ALICE in json.dumps(desk.emulator.message(TRIAGE, card_ts).blocks), "the card showing Alice"
    )
    stale = desk.emulator.message(TRIAGE, card_ts)
    desk.emulator.user_command(BOB, TRIAGE, "/desk", "assign 1 me").wait(10)
    desk.wait(lambda: (t := desk.ticket(1)) is not None and t.assignee_slack_id == BOB, "Bob assigned")

    pressed = desk.emulator.user_block_action(ALICE, TRIAGE, card_ts, _assignee_cleared(stale))
    payload = copy.deepcopy(pressed.payload)
    pressed.wait(10)
    desk.wait(
        lambda: [p for p in desk.emulator.response_posts if p.user == ALICE],
        "Alice to be told nothing changed",
    )
    ticket = desk.ticket(1)
    assert ticket is not None and ticket.assignee_slack_id == BOB
    assert payload["message"]["ts"] == card_ts  # the press carried the card Alice saw

    desk.wait(
        lambda: BOB in json.dumps(desk.emulator.message(TRIAGE, card_ts).blocks), "the card showing Bob"
    )
    now = desk.emulator.message(TRIAGE, card_ts)
    desk.emulator.user_block_action(ALICE, TRIAGE, card_ts, _assignee_cleared(now)).wait(10)
    desk.wait(
        lambda: (t := desk.ticket(1)) is not None and t.assignee_slack_id is None, "the ticket unassigned"
    )


def test_a_customer_deleting_a_message_with_a_file_leaves_the_file_with_a_line_saying_so(
    desk: Desk,
) -> None:
    """The text copy of the customer's message goes from the triage thread; the file they sent is
    kept as part of the ticket's record, but no longer without context: the thread says the
    customer deleted the message the file came with."""
    customer_ts, card_ts = open_ticket(desk)
    file_ts = desk.emulator.user_post(
        DAN, CONNECT, "Wrong invoice attached", thread_ts=customer_ts, files=[("invoice.pdf", b"%PDF fake")]
    )
    desk.wait_thread_text(TRIAGE, card_ts, "Wrong invoice attached")
    desk.wait(
        lambda: [f for f in desk.emulator.files.values() if f.name == "invoice.pdf" and TRIAGE in f.shares],
        "the file in the triage thread",
    )
    desk.idle()

    desk.emulator.user_delete(DAN, CONNECT, file_ts)

    line = desk.wait(
        lambda: next((m for m in desk.thread(TRIAGE, card_ts) if "deleted" in m.text), None),
        "a line saying the customer deleted the message the file came with",
    )
    assert "invoice.pdf" in line.text
    assert not any("Wrong invoice attached" in m.text for m in desk.thread(TRIAGE, card_ts))
    assert [f for f in desk.emulator.files.values() if f.name == "invoice.pdf" and TRIAGE in f.shares]


def test_a_customer_stored_by_id_while_slack_cannot_say_who_they_are_is_named_later(desk: Desk) -> None:
    """`users.info` rate limited when Dan's first request arrives: the ticket opens at once with
    Dan under his Slack id. Once Slack answers again his record and the card get his name, without
    waiting for him to write again (he may never)."""
    desk.emulator.add_fault("users.info", Fault.ratelimited(retry_after=2), times=None)
    ts = desk.emulator.user_post(DAN, CONNECT, "Printer is on fire")
    desk.wait_thread_text(CONNECT, ts, "Ticket #1 opened")
    card_ts = desk.card_ts(1)
    with desk.db.read() as session:
        customer = session.scalar(select(Customer).where(Customer.slack_user_id == DAN))
        assert customer is not None and customer.name == DAN  # stored under the id for now
    desk.emulator.clear_faults("users.info")

    desk.wait(lambda: _customer_name(desk) == "Dan Dorsey", "Dan's name in his customer record")
    desk.wait(
        lambda: "Dan Dorsey" in json.dumps(desk.emulator.message(TRIAGE, card_ts).blocks),
        "the card naming Dan",
    )


def _customer_name(desk: Desk) -> str | None:
    with desk.db.read() as session:
        return session.scalar(select(Customer.name).where(Customer.slack_user_id == DAN))


def test_a_customer_message_mentioning_hundreds_of_people_does_not_spend_slacks_users_info_budget(
    desk: Desk,
) -> None:
    """A pasted list of 150 mentions (a channel's member list, a hostile message): looked up all at
    once, they took all of Slack's `users.info` allowance (about 100 a minute), so for a minute
    every other lookup (a new customer's name, a staff reply's name and picture in a customer
    thread) was refused. Only a bounded number are looked up; the rest read as their ids."""
    customer_ts, card_ts = open_ticket(desk)
    desk.idle()
    before = len(desk.emulator.calls_to("users.info"))
    mentions = " ".join(f"<@U9MASS{n:04d}>" for n in range(150))
    desk.emulator.user_post(DAN, CONNECT, f"Please tell all of {mentions}", thread_ts=customer_ts)
    desk.wait_thread_text(TRIAGE, card_ts, "Please tell all of")
    desk.idle()
    asked = desk.emulator.calls_to("users.info")[before:]
    assert len(asked) <= 50, len(asked)
    assert all(call.status != 429 for call in asked)


def test_a_card_change_made_while_the_card_is_first_posted_does_not_hold_the_threads_posts(
    desk: Desk,
) -> None:
    """The ticket changes (here its priority) while its first card is still being posted: the
    card's update is queued then. Queued behind the thread's posts, a 429 on its `chat.update`
    (another method, with its own limit) held every later post of that ticket's thread until the
    block ended; the update now waits on its own, and the customer's next message reaches the
    thread."""
    hang = desk.emulator.add_fault("chat.postMessage", Fault.hang(4.0), channel=TRIAGE, times=1)
    customer_ts = desk.emulator.user_post(DAN, CONNECT, "Printer is on fire")
    desk.wait(lambda: hang.hits == 1, "the first card's post to be under way")
    desk.emulator.user_command(ALICE, TRIAGE, "/desk", "priority 1 high").wait(10)
    desk.emulator.add_fault("chat.update", Fault.ratelimited(retry_after=120), times=None)
    card_ts = desk.card_ts(1)
    desk.wait_thread_text(TRIAGE, card_ts, "Printer is on fire")
    desk.emulator.user_post(DAN, CONNECT, "Now it smokes too", thread_ts=customer_ts)

    desk.wait_thread_text(TRIAGE, card_ts, "Now it smokes too")
    with desk.db.read() as session:  # the card's update waits for its turn, not lost
        waiting = session.scalars(
            select(Outbox.lane).where(Outbox.kind == Kind.CARD.value, Outbox.state == OutboxState.PENDING)
        ).all()
    ticket = desk.ticket(1)
    assert ticket is not None and waiting == [f"card:{ticket.id}"]


def test_429s_on_two_channels_at_once_hold_every_channels_posts_for_retry_after(desk: Desk) -> None:
    """Slack's workspace-wide posting cap answers 429 on whichever channel posts next. Taken as
    one channel's limit, every other channel then collected a 429 of its own; refused on two
    channels at once, the desk now takes it as the workspace's and holds every channel's posts
    until Retry-After has passed."""
    refusals = desk.emulator.add_fault("chat.postMessage", Fault.ratelimited(retry_after=5), times=2)
    desk.emulator.user_post(DAN, CONNECT, "Printer is on fire")
    desk.wait(lambda: refusals.hits == 2, "posts refused on two channels")
    refused = [c for c in desk.emulator.calls_to("chat.postMessage") if c.status == 429]
    assert len({c.channel for c in refused}) == 2
    ts = desk.emulator.user_post(CAROL, HELP, "The VPN is down")

    desk.wait_thread_text(HELP, ts, "Ticket #2 opened")
    posted = [c for c in desk.emulator.calls_to("chat.postMessage") if c.channel == HELP and c.ok]
    assert posted[0].time - max(c.time for c in refused) >= 4.9  # held for the workspace's Retry-After
