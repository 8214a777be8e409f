"""Verbs that only read: show, list, search, customer, stats, help (and that they change nothing)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from store import actions
from store.actions import Actor
from store.models import SlackUser
from tests.bot.test_commands_support import (
    counts,
    desk_cmd,
    email_ticket,
    make_desk,
    slack_ticket,
    staff,
    thread_cmd,
)

START = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def desk(db, tmp_path):
    return make_desk(db, tmp_path)


def block_text(blocks) -> str:
    return json.dumps(blocks)


def test_show_answers_with_the_card_and_details(desk):
    email_ticket(desk, body="It jams")
    with desk.db.transaction() as s:
        found = actions.ticket_by_number(s, 1)
        found.triage_ts = "1700000000.000100"
    desk_cmd(desk, "cc 1 add erin@globex.example")
    desk_cmd(desk, "note 1 checked")
    before = counts(desk)
    reply = desk_cmd(desk, "show 1")
    assert reply.ok and reply.blocks
    shown = block_text(reply.blocks)
    assert "#1 Printer" in shown and "ticket_status" in shown
    assert "dan@globex.example (requester), erin@globex.example" in shown
    # One of each reads as one: "1 note", not "1 notes".
    assert "1 from the customer, 0 replies, 1 note " in shown
    assert "https://acme.slack.com/archives/C0TRIAGE/p1700000000000100" in shown
    assert thread_cmd(desk, 1, "show").blocks
    assert counts(desk) == before


def test_show_of_a_ticket_merged_away_says_where_its_messages_went(desk):
    """#2 merged into #1: its messages and people moved to #1. `show 2` said "Participants: none
    by email" and "Messages: 0 from the customer, 0 replies, 0 notes", as if Erin had never written;
    it now says they are on #1."""
    email_ticket(desk, body="It jams")
    email_ticket(desk, "erin@globex.example", body="Mine jams too")
    desk_cmd(desk, "merge 2 into 1")
    shown = block_text(desk_cmd(desk, "show 2").blocks)
    assert "none by email" not in shown and "0 from the customer" not in shown
    assert "Participants and messages: moved to #1 with the merge" in shown
    assert "2 from the customer" in block_text(desk_cmd(desk, "show 1").blocks)


def test_list_filters_and_pages(desk):
    for i in range(23):
        email_ticket(desk, subject=f"Ticket {i}")
    desk_cmd(desk, "assign 3 me")
    desk_cmd(desk, "close 4")
    desk_cmd(desk, "label-create vip")
    desk_cmd(desk, "label 5 +vip")
    before = counts(desk)
    first = desk_cmd(desk, "list")
    assert first.text == "*Open and pending tickets* — Showing 1–20 of 22: narrow the list to see the rest."
    assert "Next page: `/desk list page:2`" in block_text(first.blocks)
    second = desk_cmd(desk, "list page:2")
    assert "Showing 21–22 of 22." in second.text and "Next page" not in block_text(second.blocks)
    in_thread = thread_cmd(desk, 1, "list status:all")
    assert "Next page: `!list status:all page:2`" in block_text(in_thread.blocks)
    mine = desk_cmd(desk, "list mine")
    assert "assigned to you" in mine.text and "*#3*" in block_text(mine.blocks)
    assert "*#3*" not in block_text(desk_cmd(desk, "list unassigned").blocks)
    closed = desk_cmd(desk, "list status:closed")
    assert "*#4*" in block_text(closed.blocks) and "of 1." in closed.text
    assert "of 23" in desk_cmd(desk, "list status:all").text
    vip = desk_cmd(desk, "list label:vip unassigned")
    assert vip.text.startswith("*Open and pending tickets*, labelled vip, unassigned") and "of 1." in vip.text
    assert thread_cmd(desk, 1, "list label:nothing").text.startswith("There is no label named `nothing`")
    # Quoted, as `label 5 +"vip"` takes it (straight or curly): the name is the same.
    for quoted in ('label:"vip"', "label:“vip”", "label:'vip'"):
        assert "of 1." in desk_cmd(desk, f"list {quoted}").text, quoted
    assert desk_cmd(desk, 'list label:""').text.startswith("I can't filter by")
    assert counts(desk) == before


def test_list_links_each_ticket_to_its_thread(desk):
    email_ticket(desk)
    with desk.db.transaction() as s:
        actions.ticket_by_number(s, 1).triage_ts = "1700000000.000100"
    reply = desk_cmd(desk, "list")
    assert "<https://acme.slack.com/archives/C0TRIAGE/p1700000000000100|Printer>" in block_text(reply.blocks)


def test_search_subject_and_body_with_pages(desk):
    email_ticket(desk, subject="Printer on fire", body="smoke everywhere")
    email_ticket(desk, subject="Laptop", body="The printer driver crashes")
    email_ticket(desk, subject="Coffee")
    desk_cmd(desk, "note 3 ask about the PRINTER too")
    reply = desk_cmd(desk, "search printer")
    assert "Showing 1–3 of 3." in reply.text
    assert "“printer”" in reply.text
    assert "of 1." in desk_cmd(desk, "search smoke printer").text
    assert "No tickets on this page: 3 in all" in desk_cmd(desk, "search printer page:2").text
    assert "No tickets match." in desk_cmd(desk, "search zebra").text


def test_customer_record_organization_and_history(desk):
    with freeze_time(START):
        email_ticket(desk, "dan@globex.example", "First")
    with freeze_time(START + timedelta(days=3)):
        email_ticket(desk, "dan@globex.example", "Second")
        email_ticket(desk, "erin@globex.example", "Erin's")
    reply = desk_cmd(desk, "customer <mailto:dan@globex.example|dan@globex.example>")
    assert reply.ok
    lines = reply.text.split("\n")
    assert lines[0] == "*Dan* (dan@globex.example)"
    assert lines[1] == "Organization: globex.example, 1 other customer"
    assert lines[2] == "Customer since 2024-05-06"
    assert lines[3] == "*Tickets* (2):"
    assert lines[4].startswith("*#2* Second") and lines[5].startswith("*#1* First")
    missing = desk_cmd(desk, "customer nobody@globex.example")
    assert (
        missing.ok
        and missing.text == "No customer nobody@globex.example yet: they have never written to the desk."
    )


def test_customer_by_slack_mention_and_by_their_email(desk):
    slack_ticket(desk, user_id="U0EXTERIN")
    reply = desk_cmd(desk, "customer <@U0EXTERIN|erin>")
    assert reply.text.startswith("*Erin* (<@U0EXTERIN>)") and "From Slack" in reply.text
    assert "Organization: T0EXT" in reply.text
    email_ticket(desk, "frank@initech.example")
    with desk.db.transaction() as s:
        s.add(SlackUser(user_id="U0FRANK", name="frank", email="frank@initech.example"))
    assert desk_cmd(desk, "customer <@U0FRANK>").text.startswith("*Frank* (frank@initech.example)")


def test_stats_over_seven_and_thirty_days(desk):
    with freeze_time(START - timedelta(days=20)):
        email_ticket(desk, "old@acme.example", "Old")
    with freeze_time(START):
        email_ticket(desk, "dan@globex.example", "One")
        email_ticket(desk, "dan@globex.example", "Two")
    with freeze_time(START + timedelta(minutes=90)), desk.db.transaction() as s:
        reply = actions.add_staff_reply(
            s,
            desk.policy,
            actions.ticket_by_number(s, 2),
            author=Actor("Alice", slack_id="U0ALICE"),
            body_markdown="hi",
            slack_channel="C0TRIAGE",
            slack_ts="1.1",
        )
        s.flush()
        actions.settle_delivery(s, reply.id, reached=True)  # its email sent at once
    with freeze_time(START + timedelta(hours=26)):
        assert desk_cmd(desk, "resolve 2").ok is False  # not a verb: `status 2 resolved` is
        desk_cmd(desk, "status 2 resolved")
    with freeze_time(START + timedelta(days=2)):
        week = desk_cmd(desk, "stats").text.split("\n")
        month = desk_cmd(desk, "stats 30d").text
        day = desk_cmd(desk, "stats 1d").text
    # The period's start in each reader's own time zone (Slack renders the token), as the card's
    # "Opened" time is: a team spread over time zones should not convert from UTC in their heads.
    since = START + timedelta(days=2) - timedelta(days=7)
    assert week[0] == (
        f"*Last 7 days* (tickets opened since <!date^{int(since.timestamp())}^"
        "{date_short_pretty} at {time}|2024-05-01 09:00 UTC>)"
    )
    assert day.startswith("*Last 1 day*")
    assert week[1:] == [
        "• Opened: 2 (email 2)",
        "• First response: 1 answered, median 1h 30m",
        "• Resolved: 1, median time to resolution 1d 2h",
        "• Reopened: 0 of 1 resolved (0 %)",
        "• Repeat requesters: 1",
        "• Now: 2 open or pending, 2 unassigned",
    ]
    assert "• Opened: 3 (email 3)" in month


def test_help_lists_every_verb_and_explains_one(desk):
    reply = desk_cmd(desk, "help")
    assert reply.blocks
    for verb in ("new", "note", "status", "assign", "label-create", "merge", "cc", "customer", "stats"):
        assert f"`/desk {verb}" in reply.text
    assert "`/desk help [verb]`" in reply.text  # the usage of one verb is there to be found
    assert desk_cmd(desk, "help merge").text == "Usage: `/desk merge &lt;n&gt; into &lt;m&gt;`"
    assert thread_cmd(desk, 1, "help label").text == "Usage: `!label +a -b`"


def test_reply_names_come_from_the_context(desk):
    email_ticket(desk)
    desk_cmd(desk, "priority 1 high", staff(desk, "U0BOB", "Bob B"))
    with desk.db.transaction() as s:
        from sqlalchemy import select

        from store.models import Outbox

        lines = [
            row.payload["text"] for row in s.scalars(select(Outbox).where(Outbox.kind == "slack.thread_line"))
        ]
    assert lines == ["Bob B set priority to high"]
