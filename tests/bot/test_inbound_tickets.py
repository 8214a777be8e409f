"""Staff turn a message into a ticket: the `ticket` reaction and the "Create ticket" shortcut."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sandbox.faults import RESPONSE_URL_FAULTS, Fault
from sandbox.workspace import (
    ALICE,
    BOB,
    BOT_USER,
    CAROL,
    CONNECT,
    DAN,
    EMPTY,
    HELP,
    OTHER_APP_ID,
    OTHER_BOT_ID,
    OTHER_BOT_USER,
    TRIAGE,
)
from store import actions
from store.actions import Actor
from store.models import Attachment, Customer, Direction, Origin, Ticket
from tests.bot.inbound_harness import (  # noqa: F401 (fixtures)
    Intake,
    all_done,
    emulator_fixture,
    intake_fixture,
)


def bot_joins(intake: Intake, channel: str) -> None:
    intake.emulator.workspace.channels[channel].members.append(BOT_USER)


def test_staff_ticket_reaction_opens_a_ticket_for_the_messages_author(intake: Intake) -> None:
    bot_joins(intake, EMPTY)
    ts = intake.emulator.user_post(CAROL, EMPTY, "The wifi in room 4 is down")
    intake.emulator.user_react(ALICE, EMPTY, ts, "ticket")
    intake.run()
    [ticket] = intake.tickets()
    assert ticket.subject == "The wifi in room 4 is down"
    assert (ticket.origin, ticket.origin_channel, ticket.origin_thread_ts) == (Origin.SLACK, EMPTY, ts)
    with intake.db.transaction() as session:
        requester = session.get(Customer, ticket.requester_id)
        assert requester is not None and requester.slack_user_id == CAROL
    [message] = intake.messages()
    assert (message.slack_channel, message.slack_ts) == (EMPTY, ts)
    assert [row.kind for row in intake.outbox()] == ["slack.card", "slack.origin_ack", "slack.thread_post"]
    assert all_done(intake)


def test_replies_in_a_reaction_tickets_thread_join_it_even_outside_intake_channels(intake: Intake) -> None:
    bot_joins(intake, EMPTY)
    ts = intake.emulator.user_post(CAROL, EMPTY, "The wifi in room 4 is down")
    intake.emulator.user_react(ALICE, EMPTY, ts, "ticket")
    intake.run()
    intake.emulator.user_post(CAROL, EMPTY, "Room 5 too", thread_ts=ts)
    intake.run()
    assert [m.body_markdown for m in intake.messages()] == ["The wifi in room 4 is down", "Room 5 too"]


def test_a_message_becomes_a_ticket_once(intake: Intake) -> None:
    bot_joins(intake, EMPTY)
    ts = intake.emulator.user_post(CAROL, EMPTY, "The wifi is down")
    intake.emulator.user_react(ALICE, EMPTY, ts, "ticket")
    intake.emulator.user_react(BOB, EMPTY, ts, "ticket")
    intake.run()
    assert len(intake.tickets()) == 1 and len(intake.messages()) == 1


@pytest.mark.parametrize("merged", [False, True], ids=["own ticket", "merged into another"])
def test_a_colleagues_follow_up_in_their_own_requests_thread_joins_it(intake: Intake, merged: bool) -> None:
    """Alice (staff) asked in #it-help and reacted `ticket` on her own message: what she adds in
    that thread is the requester's, files included, not staff talking to a customer; also once her
    ticket was merged into someone else's."""
    root = intake.emulator.user_post(ALICE, HELP, "My laptop won't boot")
    intake.emulator.user_react(ALICE, HELP, root, "ticket")
    intake.run()
    if merged:
        intake.emulator.user_post(CAROL, HELP, "Laptops won't boot on floor 3")
        intake.run()
        with intake.db.transaction() as session:
            mine, other = session.scalars(select(Ticket).order_by(Ticket.id)).all()
            actions.merge(session, intake.desk.policy, mine, other, Actor("Bob", slack_id=BOB))
    screen = ("screen.png", b"\x89PNG\r\n\x1a\n" + b"0" * 50, "image/png")
    intake.emulator.user_post(ALICE, HELP, "Here is the error screen", thread_ts=root, files=[screen])
    intake.run()
    [follow_up] = [m for m in intake.messages() if m.body_markdown == "Here is the error screen"]
    assert follow_up.direction == Direction.INBOUND
    with intake.db.read() as session:
        files = session.scalars(select(Attachment.filename).where(Attachment.message_id == follow_up.id))
        assert list(files) == ["screen.png"]
    assert not [row for row in intake.outbox("slack.thread_line") if "directly" in row.payload["text"]]


def test_customers_ticket_reaction_does_nothing(intake: Intake) -> None:
    root = intake.emulator.user_post(ALICE, CONNECT, "We will upgrade the servers tonight")
    intake.emulator.user_react(DAN, CONNECT, root, "ticket")
    intake.run()
    assert intake.tickets() == []
    assert all_done(intake)


def test_other_reactions_do_nothing(intake: Intake) -> None:
    bot_joins(intake, EMPTY)
    ts = intake.emulator.user_post(CAROL, EMPTY, "The wifi is down")
    intake.emulator.user_react(ALICE, EMPTY, ts, "eyes")
    intake.run()
    assert intake.tickets() == []


def test_reaction_on_a_thread_reply_answers_in_that_thread(intake: Intake) -> None:
    root = intake.emulator.user_post(ALICE, CONNECT, "We upgraded the servers")
    reply = intake.emulator.user_post(DAN, CONNECT, "Since then *exports* fail", thread_ts=root)
    intake.emulator.user_react(ALICE, CONNECT, reply, "ticket")
    intake.run()
    [ticket] = intake.tickets()
    assert (ticket.origin_channel, ticket.origin_thread_ts) == (CONNECT, root)
    [message] = intake.messages()
    assert message.slack_ts == reply and message.body_markdown == "Since then **exports** fail"


def test_staff_message_turned_into_a_ticket_is_an_internal_request_by_its_author(intake: Intake) -> None:
    ts = intake.emulator.user_post(ALICE, CONNECT, "Globex asked for an invoice copy")
    intake.emulator.user_react(ALICE, CONNECT, ts, "ticket")
    intake.run()
    [ticket] = intake.tickets()
    with intake.db.transaction() as session:
        requester = session.get(Customer, ticket.requester_id)
        assert requester is not None and requester.slack_user_id == ALICE


def test_ticket_reaction_in_the_triage_channel_does_nothing(intake: Intake) -> None:
    ts = intake.emulator.user_post(ALICE, TRIAGE, "Lunch?")
    intake.emulator.user_react(BOB, TRIAGE, ts, "ticket")
    intake.run()
    assert intake.tickets() == []


def shortcut(intake: Intake, user: str, channel: str, ts: str) -> None:
    interaction = intake.emulator.user_shortcut(user, channel, ts)
    intake.store(interaction.payload)
    intake.run()


def ephemeral_texts(intake: Intake, user: str) -> list[str]:
    return [e.text for e in intake.emulator.ephemerals(user=user)]


def test_create_ticket_shortcut_opens_a_ticket_and_says_so(intake: Intake) -> None:
    root = intake.emulator.user_post(ALICE, HELP, "Printers are being replaced today")
    reply = intake.emulator.user_post(CAROL, HELP, "Mine prints blank pages", thread_ts=root)
    intake.run()
    assert intake.tickets() == []  # a reply in a thread that is no ticket's
    shortcut(intake, ALICE, HELP, reply)
    [ticket] = intake.tickets()
    assert (ticket.origin_channel, ticket.origin_thread_ts) == (HELP, root)
    assert ephemeral_texts(intake, ALICE) == [f"Opened ticket #{ticket.number}."]


def test_create_ticket_shortcut_twice_names_the_existing_ticket(intake: Intake) -> None:
    ts = intake.emulator.user_post(DAN, CONNECT, "Printer broken")
    intake.run()
    shortcut(intake, ALICE, CONNECT, ts)
    assert len(intake.tickets()) == 1
    assert ephemeral_texts(intake, ALICE) == ["That message is already part of ticket #1."]


def test_create_ticket_shortcut_on_an_apps_message_in_a_tickets_thread_names_the_ticket(
    intake: Intake,
) -> None:
    # What the desk posts in a customer's thread (its acknowledgement, a staff reply under the staff
    # member's name) is part of that ticket: the answer says which, not merely "an app's message".
    ts = intake.emulator.user_post(DAN, CONNECT, "Printer broken")
    intake.run()
    intake.emulator.workspace.channels[CONNECT].members.append(OTHER_BOT_USER)
    apps = intake.emulator.user_post(OTHER_BOT_USER, CONNECT, "Posted by an app", thread_ts=ts)
    elsewhere = intake.emulator.user_post(OTHER_BOT_USER, CONNECT, "An app's own message")
    for ts_ in (apps, elsewhere):  # posted through chat.postMessage: an app's, with its bot_id
        posted = intake.emulator.message(CONNECT, ts_)
        posted.bot_id, posted.app_id = OTHER_BOT_ID, OTHER_APP_ID
    shortcut(intake, ALICE, CONNECT, apps)
    shortcut(intake, ALICE, CONNECT, elsewhere)
    assert len(intake.tickets()) == 1
    assert ephemeral_texts(intake, ALICE) == [
        "That thread already belongs to ticket #1; its messages are added there.",
        "Messages from apps and bots can't become tickets.",
    ]


def test_create_ticket_shortcut_is_for_staff_only(intake: Intake) -> None:
    root = intake.emulator.user_post(ALICE, CONNECT, "We upgraded the servers")
    shortcut(intake, DAN, CONNECT, root)
    assert intake.tickets() == []
    assert ephemeral_texts(intake, DAN) == [
        "Only support staff (members of the triage channel) can turn messages into tickets."
    ]


def test_create_ticket_shortcut_where_the_bot_is_not_asks_to_invite_it(intake: Intake) -> None:
    ts = intake.emulator.user_post(CAROL, EMPTY, "The wifi is down")
    shortcut(intake, ALICE, EMPTY, ts)
    assert intake.tickets() == []
    [text] = ephemeral_texts(intake, ALICE)
    assert "I'm not a member of this channel" in text and "/invite @servicedesk" in text


def test_create_ticket_shortcut_in_a_direct_message_says_the_desk_cannot_answer_there(
    intake: Intake,
) -> None:
    # No app can be invited into a direct message between two people: "invite me" would be no help.
    intake.emulator.workspace.add_channel("D0ALICEDAN", "directmessage", [ALICE, DAN], is_private=True)
    ts = intake.emulator.user_post(DAN, "D0ALICEDAN", "Can you look at my invoice?")
    shortcut(intake, ALICE, "D0ALICEDAN", ts)
    assert intake.tickets() == []
    [text] = ephemeral_texts(intake, ALICE)
    assert "direct message" in text and "/invite" not in text


def test_the_shortcut_answer_is_sent_once_when_the_connection_drops_after_it_was_shown(
    intake: Intake,
) -> None:
    # A client that retries after a reset would show it twice; a lost answer only loses a
    # confirmation of what the thread shows anyway.
    ts = intake.emulator.user_post(DAN, CONNECT, "Printer broken")
    intake.run()
    intake.emulator.add_fault(RESPONSE_URL_FAULTS, Fault.reset_after_effect())
    shortcut(intake, ALICE, CONNECT, ts)
    assert ephemeral_texts(intake, ALICE) == ["That message is already part of ticket #1."]
