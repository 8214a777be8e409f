"""A worker that dies after a Slack post took effect and before its outcome is settled.

The row's last post is not recorded in a transaction of its own: its ts is written with the row's
outcome. Each kind that posts that way is performed here by a "dead" worker whose outcome is never
settled (as if the process died right after Slack answered); the next worker must find the post by
its metadata and settle the row without posting it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from bot.delivery import SlackDelivery
from bot.outcomes import Done
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import CONNECT, TRIAGE
from store import actions, outbox
from store.actions.common import thread_line as thread_line_of
from store.context import Desk
from store.models import Message, Ticket
from store.outbox import Kind
from tests.bot.delivery_kit import (  # noqa: F401 (fixtures)
    STAFF,
    client_for,
    desk_fixture,
    desk_for,
    drain,
    emulator_fixture,
    open_email_ticket,
    open_slack_ticket,
    posts_by_row,
    rows,
    staff_reply,
    worker_for,
)


def deliver_all(desk: Desk, delivery: SlackDelivery) -> None:
    drain(worker_for(desk, delivery.performers()), desk.db)


def deliver_one_pass(desk: Desk, delivery: SlackDelivery, kind: Kind) -> None:
    performers = {kind.value: delivery.performers()[kind.value]}
    asyncio.run(worker_for(desk, performers).run_once())


def ticket_of(desk: Desk, ticket_id: int) -> Ticket:
    with desk.db.transaction() as session:
        found = session.get(Ticket, ticket_id)
        assert found is not None
        return found


# Each story leaves exactly one due row of the kind under test, first in its lane; returns the ticket.


def card(desk: Desk, emulator: SlackEmulator, delivery: SlackDelivery) -> int:
    return open_email_ticket(desk)


def thread_post(desk: Desk, emulator: SlackEmulator, delivery: SlackDelivery) -> int:
    ticket_id = open_email_ticket(desk)
    deliver_one_pass(desk, delivery, Kind.CARD)
    return ticket_id


def thread_line(desk: Desk, emulator: SlackEmulator, delivery: SlackDelivery) -> int:
    ticket_id = open_email_ticket(desk)
    deliver_all(desk, delivery)
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        thread_line_of(session, ticket, "Alice looked at it")
    return ticket_id


def origin_ack(desk: Desk, emulator: SlackEmulator, delivery: SlackDelivery) -> int:
    return open_slack_ticket(desk, emulator)


def origin_line(desk: Desk, emulator: SlackEmulator, delivery: SlackDelivery) -> int:
    ticket_id = open_slack_ticket(desk, emulator)
    deliver_all(desk, delivery)
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        actions.set_status(session, desk.policy, ticket, "resolved", STAFF)
    return ticket_id


def origin_post(desk: Desk, emulator: SlackEmulator, delivery: SlackDelivery) -> int:
    ticket_id = open_slack_ticket(desk, emulator)
    deliver_all(desk, delivery)
    staff_reply(desk, ticket_id, "Try **restarting** it.")
    return ticket_id


Story = Callable[[Desk, SlackEmulator, SlackDelivery], int]
STORIES: dict[Kind, Story] = {
    Kind.CARD: card,
    Kind.THREAD_POST: thread_post,
    Kind.THREAD_LINE: thread_line,
    Kind.ORIGIN_ACK: origin_ack,
    Kind.ORIGIN_LINE: origin_line,
    Kind.ORIGIN_POST: origin_post,
}


@pytest.mark.parametrize("kind", list(STORIES), ids=[kind.value for kind in STORIES])
def test_a_post_whose_worker_died_before_settling_is_not_posted_again(
    desk: Desk, emulator: SlackEmulator, kind: Kind
) -> None:
    delivery = SlackDelivery(desk, client_for(emulator))
    ticket_id = STORIES[kind](desk, emulator, delivery)
    # The dead worker's lease has already lapsed, so the next worker takes the row at once.
    (item,) = outbox.claim_due(desk.db, "dead-worker", lease=timedelta(seconds=-1), kinds=frozenset({kind}))
    outcome = asyncio.run(delivery.performers()[kind.value](item))
    # Slack has the post; the store has nothing of it (no progress written before the settling).
    assert isinstance(outcome, Done) and "ts:0" in outcome.result
    assert posts_by_row(emulator)[(item.id, 0)] == 1
    (row,) = [r for r in rows(desk.db, kind.value) if r.id == item.id]
    assert row.result == {} and row.state == "claimed"

    deliver_all(desk, delivery)

    assert posts_by_row(emulator)[(item.id, 0)] == 1  # found by its metadata, not posted again
    (row,) = [r for r in rows(desk.db, kind.value) if r.id == item.id]
    assert row.state == "done" and row.attempts == 2
    assert row.result["ts:0"] == outcome.result["ts:0"]
    lookups = emulator.calls_to("conversations.history") + emulator.calls_to("conversations.replies")
    assert lookups, "the second attempt looked before posting"
    # What the store keeps of the post is the one Slack has.
    opened = ticket_of(desk, ticket_id)
    if kind == Kind.CARD:
        assert opened.triage_ts == outcome.result["ts:0"]
    if kind in (Kind.THREAD_POST, Kind.ORIGIN_POST):
        with desk.db.transaction() as session:
            message = session.get(Message, item.message_id)
            assert message is not None
            channel = TRIAGE if kind == Kind.THREAD_POST else CONNECT
            assert (message.mirror_channel, message.mirror_ts) == (channel, outcome.result["ts:0"])
