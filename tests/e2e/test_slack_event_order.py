"""Slack events as Slack sends them, end to end: a deletion told as a tombstone, an edit of a
command that already ran."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import pytest
from sqlalchemy import select

from bot.commands.runner import STORE_BUSY
from sandbox import RequestSender
from sandbox.state import Message as SlackMessage
from sandbox.workspace import ALICE, BOB, CONNECT, DAN, HELP, SIGNING_SECRET, TRIAGE
from store.models import Ticket
from tests.e2e.conftest import WAIT_SECONDS, StartService
from tests.e2e.test_slack import REPLY_DELAY, Desk, customer_sees, delivered_marker, open_ticket

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def desk(start_service: StartService) -> Desk:
    return Desk(start_service(intake_channels=(CONNECT, HELP), reply_delay_seconds=REPLY_DELAY))


def test_a_customer_deleting_their_request_is_mirrored_into_the_triage_thread(desk: Desk) -> None:
    """The request always has replies (the acknowledgement at least), so Slack tells of its
    deletion as a `message_changed` whose message is a tombstone posted as Slackbot."""
    customer_ts, card_ts = open_ticket(desk, "Printer is on fire")
    desk.wait_thread_text(TRIAGE, card_ts, "Printer is on fire")

    desk.emulator.user_delete(DAN, CONNECT, customer_ts)

    desk.wait(
        lambda: not any("Printer is on fire" in m.text for m in desk.thread(TRIAGE, card_ts)),
        "the request's copy in the triage thread to be deleted",
    )
    message = desk.message_at(CONNECT, customer_ts)
    assert message is not None and message.deleted_at is not None
    assert desk.ticket_count() == 1


def test_a_command_edited_afterwards_is_neither_sent_to_the_customer_nor_run_again(desk: Desk) -> None:
    """A `!` command ran when it came in; its author editing it later (dropping the `!`, or fixing
    a typo) must not turn it into a reply the customer gets, nor run it a second time: they are
    told, in the thread, to type it anew."""
    customer_ts, card_ts = open_ticket(desk)
    command_ts = desk.emulator.user_post(ALICE, TRIAGE, "!priority high", thread_ts=card_ts)
    desk.wait(lambda: (t := desk.ticket(1)) is not None and t.priority == "high", "the command to run")
    desk.idle()
    desk.emulator.user_edit(ALICE, TRIAGE, command_ts, "priority high: this customer shouts at us")
    typo_ts = desk.emulator.user_post(ALICE, TRIAGE, "!prority low", thread_ts=card_ts)
    desk.idle()
    desk.emulator.user_edit(ALICE, TRIAGE, typo_ts, "!priority low")
    delivered_marker(desk, customer_ts, card_ts)

    assert not any("shouts" in text for text in customer_sees(desk, customer_ts))
    assert desk.message_at(TRIAGE, command_ts) is None  # never stored as a reply either
    ticket = desk.ticket(1)
    assert ticket is not None and ticket.priority == "high"  # the edited command did not run
    told = [e.text for e in desk.emulator.ephemerals(TRIAGE, ALICE) if "type it as a new message" in e.text]
    assert len(told) == 2, [e.text for e in desk.emulator.ephemerals(TRIAGE, ALICE)]


def _labels(desk: Desk) -> list[str]:
    with desk.db.read() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == 1))
        return sorted(label.name for label in ticket.labels) if ticket is not None else []


def _labels_picked(card_message: SlackMessage, names: list[str]) -> dict[str, Any]:
    block_id = next(b["block_id"] for b in card_message.blocks or [] if b.get("type") == "actions")
    return {
        "action_id": "ticket_labels",
        "block_id": block_id,
        "type": "multi_static_select",
        "selected_options": [{"text": {"type": "plain_text", "text": n}, "value": n} for n in names],
        "action_ts": "1.1",
    }


def test_two_staff_picking_labels_on_the_card_at_once_both_get_theirs(desk: Desk) -> None:
    """The labels menu sends the presser's whole choice, made on the card as they saw it: Bob,
    picking `question` on the same card at the same moment as Alice picks `bug`, did not take
    Alice's label off (he never saw it)."""
    for name in ("bug", "question"):
        desk.emulator.user_command(ALICE, TRIAGE, "/desk", f"label-create {name}").wait(10)
    _customer_ts, card_ts = open_ticket(desk)
    desk.wait(
        lambda: "question" in json.dumps(desk.emulator.message(TRIAGE, card_ts).blocks), "the labels menu"
    )
    card = desk.emulator.message(TRIAGE, card_ts)

    alice = desk.emulator.user_block_action(ALICE, TRIAGE, card_ts, _labels_picked(card, ["bug"]))
    alice.wait(10)
    desk.wait(lambda: _labels(desk) == ["bug"], "Alice's label")
    # Bob's press, made on the card as it was before Alice's change reached it.
    bob = copy.deepcopy(alice.payload)
    bob["user"] = {"id": BOB, "username": "bob", "name": "bob", "team_id": "T0HOME"}
    bob["trigger_id"] = "2222.3333.bobs-own-press"
    bob["actions"] = [_labels_picked(card, ["question"])]
    assert RequestSender(desk.url, SIGNING_SECRET).send_interaction_sync(bob).ok

    desk.wait(
        lambda: _labels(desk) == ["bug", "question"],
        "both labels on the ticket",
    )
    # Taking a label off with the menu still works: Alice unpicks `bug` on the card she now sees.
    desk.wait(lambda: "question" in desk.emulator.message(TRIAGE, card_ts).text, "the card showing both")
    now = desk.emulator.message(TRIAGE, card_ts)
    desk.emulator.user_block_action(ALICE, TRIAGE, card_ts, _labels_picked(now, ["question"])).wait(10)
    desk.wait(lambda: _labels(desk) == ["question"], "bug taken off")


def test_a_card_press_that_cannot_finish_in_time_is_not_applied_later(desk: Desk) -> None:
    """Another transaction holds the ticket past Slack's 3 s: Slack has shown the presser that the
    menu failed, so the change must not land later behind their back; it is rolled back and the
    presser told, as a `/desk` verb is."""
    _customer_ts, card_ts = open_ticket(desk)
    holding, release = threading.Event(), threading.Event()

    def hold_the_ticket() -> None:
        # On PostgreSQL a row lock (as a merge or a long settle holds it); on SQLite any write
        # transaction, from another connection as another process's would be.
        with desk.db.transaction() as session:
            session.execute(select(Ticket.id).where(Ticket.number == 1).with_for_update())
            holding.set()
            release.wait(WAIT_SECONDS)

    holder = threading.Thread(target=hold_the_ticket)
    holder.start()
    try:
        assert holding.wait(WAIT_SECONDS)
        desk.emulator.dispatcher.ack_timeout = 40.0  # room for a late answer, so it shows
        desk.emulator.user_block_action(BOB, TRIAGE, card_ts, "ticket_status", "pending")
        told = desk.wait(
            lambda: [p for p in desk.emulator.response_posts if p.user == BOB],
            "the presser to be told while the ticket is still held",
        )
    finally:
        release.set()
        holder.join()
    assert told[0].body["text"] == STORE_BUSY
    desk.emulator.user_block_action(BOB, TRIAGE, card_ts, "ticket_priority", "high").wait(10)
    desk.wait(lambda: (t := desk.ticket(1)) is not None and t.priority == "high", "the next press")
    ticket = desk.ticket(1)
    assert ticket is not None and ticket.status == "open"
