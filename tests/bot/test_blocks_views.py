"""Thread lines, help, App Home and ticket lists as data."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.blocks import (
    HomeView,
    Metric,
    TicketSummary,
    help_blocks,
    help_text,
    home_view,
    messages,
    ticket_list_blocks,
)
from bot.blocks.format import age, link_words, ordinal
from bot.blocks.help import DESK_COMMANDS
from bot.commands.stats import home_metrics, stats_lines
from store.queries import DeskStats

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def summary(number, **changes):
    values = {
        "number": number,
        "subject": f"Subject {number}",
        "status": "open",
        "priority": "normal",
        "assignee_user_id": None,
        "requester_name": "Dan",
        "permalink": f"https://acme.slack.com/archives/C1/p{number}",
        "created_at": NOW - timedelta(days=3),
        "updated_at": NOW - timedelta(hours=1),
    }
    values.update(changes)
    return TicketSummary(**values)


def test_customer_ack_and_refusal():
    assert messages.customer_ack(42) == "Ticket #42 opened — we'll reply here."
    assert messages.not_staff() == "Sorry, only members of the support team can do that."


def test_delivery_failed_names_the_fix():
    line = messages.delivery_failed(42, "dan@globex.example", "mailbox unavailable")
    assert line == (
        ":warning: Couldn't deliver to dan@globex.example: mailbox unavailable — check the address or "
        "`/desk cc 42 remove dan@globex.example`."
    )


def test_user_text_is_escaped():
    assert messages.command_usage("fo`o<x>").startswith("Unknown command `!foo&lt;x&gt;`.")


def test_usage_lines():
    assert "`!assign @alice`" in messages.command_usage("frobnicate")
    assert messages.desk_usage("frobnicate") == (
        "Unknown command `/desk frobnicate`. Try `/desk help` for the list of commands."
    )


def test_help_lists_every_verb():
    text = help_text()
    verbs = [
        *("new", "note", "status", "close", "reopen", "assign", "unassign", "priority"),
        *("label", "labels", "label-create", "link", "unlink", "merge", "cc"),
        *("show", "list", "search", "customer", "stats", "help"),
    ]
    assert [syntax.split()[0] for syntax, _ in DESK_COMMANDS] == verbs
    for verb in verbs:
        assert f"`/desk {verb}" in text
    assert "`!label +bug -question`" in text
    for block in help_blocks():
        Block.parse(block).validate_json()
        assert len(block.get("text", {}).get("text", "")) <= 3000


def test_home_view_with_tickets_and_metrics():
    view = HomeView(
        user_id="U0ALICE",
        my_open=(summary(1, assignee_user_id="U0ALICE", priority="urgent"),),
        unassigned=tuple(summary(n) for n in range(2, 20)),
        oldest_waiting=(summary(30, waiting_since=NOW - timedelta(hours=5)),),
        recently_changed=(),
        metrics=(Metric("Open", "12"), Metric("Median first response", "1h 20m")),
        now=NOW,
    )
    home = home_view(view)
    assert home["type"] == "home"
    View(**home).validate_json()
    assert len(home["blocks"]) <= 100
    text = str(home)
    assert "*#1* <https://acme.slack.com/archives/C1/p1|Subject 1> · Open · Urgent · <@U0ALICE> · 3d" in text
    assert "…and 8 more" in text
    assert "waiting 5h" in text
    # The waiting section counts what it does not show too; `/desk list` has no such list.
    blocks = home_view(replace(view, oldest_waiting=view.unassigned[:10], waiting_total=25))["blocks"]
    headers = [i for i, block in enumerate(blocks) if block["type"] == "header"]
    start = next(i for i in headers if blocks[i]["text"]["text"] == "Waiting longest for a reply")
    section = str(blocks[start : headers[headers.index(start) + 1]])
    assert "…and 15 more waiting" in section and "/desk list" not in section
    assert "Nothing here." in text
    assert "Median first response" in text


def test_home_view_empty():
    view = HomeView("U0ALICE", (), (), (), (), (), NOW)
    home = home_view(view)
    View(**home).validate_json()
    assert str(home).count("Nothing here.") == 5


def test_ticket_list_paginated():
    tickets = [summary(n, subject="A & <b>") for n in range(1, 21)]
    blocks = ticket_list_blocks(tickets, title="*Open tickets*", total=57, now=NOW)
    assert len(blocks) <= 50
    for block in blocks:
        Block.parse(block).validate_json()
    assert "|A &amp; &lt;b&gt;>" in blocks[1]["text"]["text"]
    assert blocks[-1]["elements"][0]["text"].startswith("Showing 1–20 of 57")


def test_a_subject_that_reads_as_an_address_still_links_to_its_thread():
    """A subject is the customer's words, and the link is the ticket's own thread: nobody is misled."""
    subjects = ["invoice.pdf", "acme.com", "dan@globex.example", "https://bank.example/pay"]
    blocks = ticket_list_blocks(
        [summary(n, subject=subject) for n, subject in enumerate(subjects, 1)],
        title="*Open*",
        total=4,
        now=NOW,
    )
    shown = blocks[1]["text"]["text"]
    for number, subject in enumerate(subjects, 1):
        assert f"<https://acme.slack.com/archives/C1/p{number}|{subject}>" in shown


def test_ticket_list_empty():
    blocks = ticket_list_blocks([], title="*Search*", total=0, now=NOW)
    assert blocks[-1]["elements"][0]["text"] == "No tickets match."


def test_format_helpers():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 102, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "102nd", "111th",
    ]  # fmt: skip
    assert age(NOW - timedelta(seconds=30), NOW) == "30s"
    assert age(NOW - timedelta(minutes=90), NOW) == "1h"
    assert age(NOW - timedelta(days=10), NOW) == "10d"
    assert age(NOW - timedelta(days=30), NOW) == "4w"
    assert link_words("https://github.com/acme/app/issues/9") == "github.com #9"
    assert link_words("https://gitlab.com/a/b/-/merge_requests/12") == "gitlab.com #12"
    assert link_words("https://acme.atlassian.net/browse/PROJ-12") == "acme.atlassian.net PROJ-12"
    assert link_words("https://bugzilla.example.org/show_bug.cgi?id=123") == "bugzilla.example.org #123"
    assert link_words("https://www.example.com/docs/page") == "example.com/docs/page"


def test_large_counts_are_grouped_by_thousands_and_read_as_one_number():
    """A busy desk: 12345 tickets opened, 12000 of them by email. "Opened: 12345 (email 12000,
    slack 345)" is hard to read, and grouping with commas would read as more numbers than there are
    ("email 12,000, slack 345"). Counts are grouped with a narrow no-break space (as `25 %` is
    written): in /desk stats, the Home tab's sections and figures, and a list's page note."""
    since = NOW - timedelta(days=7)
    stats = DeskStats(
        since=since,
        until=NOW,
        created=12345,
        created_by_origin={"email": 12000, "slack": 345},
        created_by_label={"billing": 1500},
        responded=12000,
        first_response_median=timedelta(minutes=5),
        resolved=11000,
        resolution_median=timedelta(days=400, hours=3),
        reopened=1100,
        repeat_requesters=2500,
        open_now=1345,
        unassigned_now=1001,
    )
    lines = stats_lines(stats, 7)
    assert lines[1:] == [
        "• Opened: 12\u202f345 (email 12\u202f000, slack 345)",
        "• First response: 12\u202f000 answered, median 5m",
        "• Resolved: 11\u202f000, median time to resolution 400d 3h",
        "• Reopened: 1\u202f100 of 11\u202f000 resolved (10 %)",
        "• Repeat requesters: 2\u202f500",
        "• By label: billing 1\u202f500",
        "• Now: 1\u202f345 open or pending, 1\u202f001 unassigned",
    ]
    view = HomeView(
        user_id="U0ALICE",
        my_open=(),
        unassigned=tuple(summary(n) for n in range(1, 101)),
        oldest_waiting=(),
        recently_changed=(),
        metrics=home_metrics(stats, 7),
        now=NOW,
        unassigned_total=12345,
    )
    home = home_view(view)
    View(**home).validate_json()
    text = json.dumps(home, ensure_ascii=False)
    assert "…and 12\u202f335 more" in text
    assert "*Open or pending*\\n1\u202f345" in text and "*Opened, last 7 days*\\n12\u202f345" in text
    blocks = ticket_list_blocks([summary(1)], title="*Open tickets*", total=12345, now=NOW)
    assert blocks[-1]["elements"][0]["text"] == (
        "Showing 1–1 of 12\u202f345: narrow the list to see the rest."
    )
