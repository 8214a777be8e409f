"""The Slack intake, handled by the worker: requests, customer threads, staff replies and notes."""

from __future__ import annotations

import pytest

from sandbox.faults import Fault
from sandbox.workspace import (
    ALICE,
    BOB,
    CAROL,
    CONNECT,
    DAN,
    EMPTY,
    ERIN,
    EXTERNAL_TEAM,
    HELP,
    TRIAGE,
)
from store.models import Customer, Delivery, Direction, Organization, Origin, SlackUser, Visibility
from tests.bot.inbound_harness import (  # noqa: F401 (fixtures)
    Intake,
    all_done,
    bot_client,
    emulator_fixture,
    intake_fixture,
    open_connect_ticket,
    triage_thread,
)


def test_slack_connect_message_opens_a_ticket_with_ack_card_and_message(intake: Intake) -> None:
    ts = open_connect_ticket(intake)
    [ticket] = intake.tickets()
    assert ticket.number == 1
    assert ticket.origin == Origin.SLACK
    assert (ticket.origin_channel, ticket.origin_thread_ts) == (CONNECT, ts)
    assert ticket.subject == "Printer is on fire"
    [message] = intake.messages()
    assert message.direction == Direction.INBOUND
    assert message.body_markdown == "Printer is **on fire**"
    assert (message.slack_channel, message.slack_ts) == (CONNECT, ts)
    kinds = [row.kind for row in intake.outbox()]
    assert kinds == ["slack.card", "slack.origin_ack", "slack.thread_post"]
    assert all_done(intake)


def test_slack_connect_customer_gets_their_team_as_organization(intake: Intake) -> None:
    open_connect_ticket(intake)
    with intake.db.transaction() as session:
        [customer] = session.query(Customer).all()
        assert customer.name == "Dan Dorsey"
        assert customer.email == "dan@globex.example"
        assert customer.slack_team_id == EXTERNAL_TEAM
        organization = session.get(Organization, customer.organization_id)
        assert organization is not None and organization.slack_team_id == EXTERNAL_TEAM


def test_hidden_email_leaves_the_customer_without_one(intake: Intake) -> None:
    intake.emulator.user_post(ERIN, CONNECT, "Hello?")
    intake.run()
    with intake.db.transaction() as session:
        [customer] = session.query(Customer).all()
        assert (customer.name, customer.email) == ("Erin Eames", None)


def test_staff_message_in_an_intake_channel_is_not_a_ticket(intake: Intake) -> None:
    intake.emulator.user_post(ALICE, CONNECT, "Good morning, Globex!")
    intake.run()
    assert intake.tickets() == []
    assert all_done(intake)


def test_external_user_and_staff_are_told_apart(intake: Intake) -> None:
    intake.emulator.user_post(ALICE, CONNECT, "Staff here")
    intake.emulator.user_post(DAN, CONNECT, "Customer here")
    intake.run()
    [ticket] = intake.tickets()
    assert ticket.subject == "Customer here"
    with intake.db.transaction() as session:
        staff = {row.user_id: row.is_staff for row in session.query(SlackUser).all()}
    assert staff[ALICE] is True and staff[BOB] is True
    assert staff.get(DAN) is False


def test_later_messages_in_the_customers_thread_join_the_ticket(intake: Intake) -> None:
    ts = open_connect_ticket(intake)
    intake.emulator.user_post(ERIN, CONNECT, "Same here, colleague of Dan", thread_ts=ts)
    intake.run()
    [ticket] = intake.tickets()
    _first, second = intake.messages()
    assert second.ticket_id == ticket.id and second.author_name == "Erin Eames"
    assert [row.kind for row in intake.outbox()].count("slack.thread_post") == 2


def test_a_thread_reply_that_belongs_to_no_ticket_is_not_a_ticket(intake: Intake) -> None:
    root = intake.emulator.user_post(ALICE, CONNECT, "Announcement: maintenance tonight")
    intake.emulator.user_post(DAN, CONNECT, "Thanks!", thread_ts=root)
    intake.run()
    assert intake.tickets() == []
    assert all_done(intake)


def test_staff_answering_in_the_customers_thread_is_pointed_out_in_triage(intake: Intake) -> None:
    ts = open_connect_ticket(intake)
    intake.emulator.user_post(ALICE, CONNECT, "On it!", thread_ts=ts)
    intake.run()
    assert len(intake.messages()) == 1
    lines = [row.payload["text"] for row in intake.outbox("slack.thread_line")]
    assert lines == ["alice wrote in the customer's thread directly:\n> On it!"]


def test_staff_sending_files_in_the_customers_thread_names_them_in_triage(intake: Intake) -> None:
    """Files alone would quote nothing: the team must see what the customer was sent."""
    ts = open_connect_ticket(intake)
    intake.emulator.user_post(ALICE, CONNECT, "", thread_ts=ts, files=[("fix_1.pdf", b"%PDF")])
    intake.emulator.user_post(
        ALICE, CONNECT, "Both here", thread_ts=ts, files=[("a.txt", b"a"), ("b.txt", b"b")]
    )
    intake.run()
    lines = [row.payload["text"] for row in intake.outbox("slack.thread_line")]
    assert lines == [
        "alice wrote in the customer's thread directly:\n> Sent a file: fix_1.pdf",
        "alice wrote in the customer's thread directly:\n> Both here\n> Sent 2 files: a.txt, b.txt",
    ]


def test_the_quote_of_staff_writing_in_the_customers_thread_pings_no_one(intake: Intake) -> None:
    """Typed brackets reach the desk as text: quoted raw (as Markdown, whose backslash escapes
    Slack ignores) they would be a real @channel and a link disguised as the bank's."""
    ts = open_connect_ticket(intake)
    typed = "<!channel> see <https://evil.example|https://bank.example>"
    section = {"type": "rich_text_section", "elements": [{"type": "text", "text": typed}]}
    blocks = [{"type": "rich_text", "elements": [section]}]
    as_sent = typed.replace("<", "&lt;").replace(">", "&gt;")  # how Slack sends typed brackets
    intake.emulator.user_post(ALICE, CONNECT, as_sent, thread_ts=ts, blocks=blocks)
    intake.run()
    [line] = [row.payload["text"] for row in intake.outbox("slack.thread_line")]
    assert line == (
        "alice wrote in the customer's thread directly:\n"
        "> &lt;!channel&gt; see &lt;https://evil.example|https://bank.example&gt;"
    )


def test_staff_writing_in_the_customers_thread_is_pointed_out_once(intake: Intake) -> None:
    """Its edit, and Slack delivering it again under another event id, add no more lines."""
    ts = open_connect_ticket(intake)
    reply = intake.emulator.user_post(ALICE, CONNECT, "On it!", thread_ts=ts)
    intake.run()
    again = dict(intake.emulator.events[-1], event_id="Ev0DIRECTAGAIN")
    assert intake.store(again)
    intake.emulator.user_edit(ALICE, CONNECT, reply, "On it! (typo fixed)")
    intake.run()
    assert len(intake.outbox("slack.thread_line")) == 1
    assert all_done(intake)


def test_staff_reply_in_the_triage_thread_waits_for_the_delay(intake: Intake) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    reply_ts = intake.emulator.user_post(ALICE, TRIAGE, "Try turning it _off_ and on", thread_ts=card)
    intake.run()
    reply = intake.messages()[-1]
    assert reply.direction == Direction.OUTBOUND and reply.visibility == Visibility.PUBLIC
    assert reply.body_markdown == "Try turning it _off_ and on"
    assert (reply.author_slack_id, reply.author_name) == (ALICE, "alice")
    assert reply.delivery == Delivery.PENDING
    assert reply.deliver_after is not None and reply.deliver_after > reply.created_at
    [post] = intake.outbox("slack.origin_post")
    assert post.message_id == reply.id and post.next_attempt_at == reply.deliver_after
    [receipt] = intake.outbox("slack.reaction")
    assert receipt.payload == {
        "channel": TRIAGE,
        "ts": reply_ts,
        "add": "hourglass_flowing_sand",
        "remove": None,
    }


def test_our_own_messages_are_ignored(intake: Intake) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    client = bot_client(intake)
    client.chat_postMessage(channel=TRIAGE, thread_ts=card, text="A line from the desk")
    client.chat_postMessage(channel=CONNECT, text="We are the bot, not a customer")
    intake.run()
    assert len(intake.tickets()) == 1
    assert len(intake.messages()) == 1


def test_slackbot_posting_in_an_intake_channel_opens_no_ticket(intake: Intake) -> None:
    """Slackbot's own posts (custom responses, some reminders) come from the user USLACKBOT,
    without a bot_id: a bot all the same, never a customer."""
    intake.emulator.user_post(DAN, CONNECT, "Reminder: renew the certificate")
    posted = intake.emulator.events[-1]
    intake.fed = len(intake.emulator.events)  # only Slackbot's version below reaches the desk
    from_slackbot = {**posted, "event_id": "Ev0SLACKBOT", "event": {**posted["event"], "user": "USLACKBOT"}}
    from_slackbot["event"].pop("user_team", None)
    intake.store(from_slackbot)
    intake.run()
    assert intake.tickets() == []
    assert all_done(intake)


@pytest.mark.parametrize(
    "text",
    [
        "note: call them tomorrow",
        "NOTE:call them tomorrow",
        "  Note: call them tomorrow",
        "*note:* call them tomorrow",  # typed in bold: Slack's text carries the markers
        "_Note_: call them tomorrow",
        "`note:` call them tomorrow",
        "~note:~call them tomorrow",
        "*note: call them tomorrow*",  # the whole note in bold: no mark is left dangling
    ],
)
def test_note_prefix_makes_an_internal_note_marked_at_once(intake: Intake, text: str) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    ts = intake.emulator.user_post(BOB, TRIAGE, text, thread_ts=card)
    intake.run()
    note = intake.messages()[-1]
    assert note.visibility == Visibility.INTERNAL
    assert note.body_markdown == "call them tomorrow"
    assert note.delivery is None
    assert intake.outbox("slack.origin_post") == [] and intake.outbox("email.send") == []
    [marker] = intake.outbox("slack.reaction")
    assert marker.payload["ts"] == ts and marker.payload["add"] == "lock"


def test_someone_not_staff_in_a_triage_thread_only_ever_makes_a_note(intake: Intake) -> None:
    open_connect_ticket(intake)
    card = triage_thread(intake)
    members = intake.emulator.workspace.channels[TRIAGE].members
    members.append(CAROL)
    intake.emulator.user_post(CAROL, TRIAGE, "I think it's the fuser", thread_ts=card)
    # Gone again before the worker looks: the staff list (refreshed then) does not have her.
    members.remove(CAROL)
    intake.run()
    note = intake.messages()[-1]
    assert note.author_slack_id == CAROL and note.visibility == Visibility.INTERNAL
    assert intake.outbox("slack.origin_post") == []


def test_a_message_in_a_channel_we_do_not_watch_is_dropped_at_the_edge(intake: Intake) -> None:
    intake.emulator.workspace.channels[EMPTY].members.append("U0BOT")
    intake.emulator.user_post(CAROL, EMPTY, "random chatter")
    intake.run()
    assert intake.stored == [False]
    assert intake.tickets() == []


def test_internal_help_channel_colleague_opens_a_ticket_without_organization(intake: Intake) -> None:
    intake.emulator.user_post(CAROL, HELP, "My laptop won't boot")
    intake.run()
    [ticket] = intake.tickets()
    with intake.db.transaction() as session:
        customer = session.get(Customer, ticket.requester_id)
        assert customer is not None and customer.email == "carol@acme.example"
        # acme.example is a company domain, so she belongs to it, not to a Slack team of her own.
        organization = session.get(Organization, customer.organization_id)
        assert organization is not None and organization.slack_team_id is None


def test_a_slack_outage_during_intake_stores_the_request_under_the_users_id(intake: Intake) -> None:
    intake.emulator.add_fault("users.info", Fault.server_error(503), times=None)
    intake.emulator.user_post(DAN, CONNECT, "Is anyone there?")
    intake.run()
    [ticket] = intake.tickets()
    assert all_done(intake)
    intake.emulator.clear_faults()
    intake.emulator.user_post(DAN, CONNECT, "Still there?", thread_ts=ticket.origin_thread_ts)
    intake.run()
    with intake.db.transaction() as session:
        customer = session.get(Customer, ticket.requester_id)
        assert customer is not None and customer.name == "Dan Dorsey"
