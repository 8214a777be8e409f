"""The shared parser and runner: Slack's escaped words, usage lines, refusals; nothing changes on error."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.commands import CommandContext, run_desk_command, run_thread_command
from bot.commands.registry import VERBS, find_verb
from bot.commands.tokens import email_address, link_url, plain_words, ticket_number, tokenize, user_mention
from bot.text import DictMentionResolver
from store.models import Ticket
from tests.bot.test_commands_support import OUTSIDER, counts, desk_cmd, email_ticket, make_desk, thread_cmd


@pytest.fixture
def desk(db, tmp_path):
    return make_desk(db, tmp_path)


def test_tokens_keep_slack_items_whole():
    tokens = tokenize("assign 42 <@U0BOB|bob smith>  <https://x.example/a?b=1&amp;c=2|the bug>")
    assert [t.raw for t in tokens] == [
        "assign",
        "42",
        "<@U0BOB|bob smith>",
        "<https://x.example/a?b=1&amp;c=2|the bug>",
    ]
    assert user_mention(tokens[2]) == ("U0BOB", "bob smith")
    assert user_mention(tokenize("<@W0ENT>")[0]) == ("W0ENT", None)
    assert link_url(tokens[3]) == "https://x.example/a?b=1&c=2"
    assert link_url(tokenize("https://x.example/9")[0]) == "https://x.example/9"
    assert link_url(tokenize("ftp://x.example")[0]) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<mailto:Bob@Example.com|Bob@Example.com>", "bob@example.com"),
        ("bob@example.com", "bob@example.com"),
        ("bob@localhost", None),
        ("<@U0BOB>", None),
        ("bob", None),
    ],
)
def test_email_addresses(raw, expected):
    assert email_address(tokenize(raw)[0]) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("42", 42), ("#42", 42), ("0", None), ("4x", None), ("-1", None)]
)
def test_ticket_numbers(raw, expected):
    assert ticket_number(tokenize(raw)[0]) == expected


def test_plain_words_show_what_a_reader_sees():
    resolver = DictMentionResolver(users={"U0BOB": "Bob"})
    text = (
        "Fix &lt;b&gt; for <@U0BOB> see <https://x.example|the page> &amp; <mailto:a@b.example|a@b.example>"
    )
    assert plain_words(text, resolver) == "Fix <b> for @Bob see the page & a@b.example"


def test_every_verb_of_the_design_is_there():
    names = {verb.name for verb in VERBS}
    assert names >= {
        "new",
        "note",
        "status",
        "close",
        "reopen",
        "assign",
        "unassign",
        "priority",
        "label",
        "labels",
        "label-create",
        "link",
        "unlink",
        "merge",
        "cc",
        "show",
        "list",
        "search",
        "customer",
        "stats",
        "help",
    }
    assert find_verb("CLOSE") is find_verb("close")


def test_unknown_verb_gets_the_usage_line_and_changes_nothing(desk):
    email_ticket(desk)
    before = counts(desk)
    reply = desk_cmd(desk, "frobnicate 1")
    assert not reply.ok and "Unknown command `/desk frobnicate`" in reply.text and "/desk help" in reply.text
    in_thread = thread_cmd(desk, 1, "frobnicate")
    assert not in_thread.ok and "`!frobnicate`" in in_thread.text and "`!close`" in in_thread.text
    assert counts(desk) == before


def test_empty_command_is_help(desk):
    reply = desk_cmd(desk, "   ")
    assert reply.ok and reply.blocks and "/desk new &lt;email&gt; &lt;subject&gt;" in reply.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("close", "Which ticket? Give its number. Usage: `/desk close &lt;n&gt;`"),
        ("close abc", "`abc` is not a ticket number. Usage: `/desk close &lt;n&gt;`"),
        ("close 99", "There is no ticket #99."),
        ("close 1 now", "I don't understand `now` here. Usage: `/desk close &lt;n&gt;`"),
        ("priority 1", "Something is missing. Usage: `/desk priority &lt;n&gt; low|normal|high|urgent`"),
        (
            "priority 1 whenever",
            "`whenever` is not a priority. Usage: `/desk priority &lt;n&gt; low|normal|high|urgent`",
        ),
        (
            "status 1 done",
            "`done` is not a status. Usage: `/desk status &lt;n&gt; open|pending|resolved|closed`",
        ),
        ("assign 1", "Something is missing. Usage: `/desk assign &lt;n&gt; @user|me`"),
        (
            "assign 1 @nobody",
            "I don't know who `@nobody` is: mention them with @. Usage: `/desk assign &lt;n&gt; @user|me`",
        ),
        ("assign 1 <@U0ROBOT>", "A bot cannot own a ticket."),
        (
            "label 1",
            "Which labels? `+name` adds one, `-name` removes one. Usage: `/desk label &lt;n&gt; +a -b`",
        ),
        ("label 1 +nope", "No label named nope; create it with `/desk label-create nope`"),
        ("label-create", "Something is missing. Usage: `/desk label-create &lt;name&gt; [color]`"),
        (
            "link 1",
            "Something is missing. Usage: `/desk link &lt;n&gt; &lt;m|url&gt; [relates|duplicates|blocks]`",
        ),
        ("link 1 nowhere", "`nowhere` is neither a ticket number nor an http(s) link."),
        ("link 1 1", "A ticket cannot be linked to itself."),
        ("link 1 7", "There is no ticket #7."),
        ("link 1 <https://x.example/1> causes", "`causes` is not a kind of link."),
        ("merge 1", "Merge into which ticket? Usage: `/desk merge &lt;n&gt; into &lt;m&gt;`"),
        ("merge 1 into 1", "A ticket cannot be merged into itself."),
        ("merge 1 into soon", "`soon` is not a ticket number."),
        ("cc 1 add", "Something is missing. Usage: `/desk cc &lt;n&gt; add|remove &lt;email&gt;`"),
        ("cc 1 invite bob@example.com", "Say `add` or `remove`."),
        ("cc 1 add bob", "`bob` is not an email address."),
        ("cc 1 remove erin@example.com", "erin@example.com is not a participant of #1."),
        (
            "cc 1 remove dan@globex.example",
            "dan@globex.example is the requester of #1 and cannot be removed.",
        ),
        ("note 1", "Write the note after the ticket number. Usage: `/desk note &lt;n&gt; &lt;text&gt;`"),
        ("new", "Something is missing. Usage: `/desk new &lt;email&gt; &lt;subject&gt;`"),
        ("new dan", "`dan` is not an email address."),
        ("new dan@globex.example", "Give the ticket a subject."),
        ("new support@example.com Help", "support@example.com is the desk's own address."),
        (  # a ticket's reply address: its mail would loop between two tickets
            "new SUPPORT+abcdefghijklmnopqrstuvwxyz@example.com Help",
            "support+abcdefghijklmnopqrstuvwxyz@example.com is the desk's own address.",
        ),
        ("list everything", "I can't filter by `everything`."),
        ("list status:done", "`status:done`: the statuses are open, pending, resolved, closed, all."),
        ("list page:0", "Pages count from 1."),
        ("search", "Search for what? Usage: `/desk search &lt;text&gt; [page:N]`"),
        ("customer", "Something is missing. Usage: `/desk customer &lt;email|@user&gt;`"),
        ("customer dan", "`dan` is neither an email address nor a @mention."),
        ("stats 3w", "`3w` is not a period: say a number of days from 1 to 366, such as 7d or 30d."),
        # A period, but not one the desk counts over: the answer says which ones it does.
        ("stats 367d", "`367d` is too long: a period is 1 to 366 days (1d to 366d)."),
        ("stats 0d", "`0d` is too short: a period is 1 to 366 days (1d to 366d)."),
        ("stats 1000d", "`1000d` is too long: a period is 1 to 366 days (1d to 366d)."),
        ("help nothing", "There is no command `nothing`."),
        ("show 1 2", "I don't understand `2` here. Usage: `/desk show &lt;n&gt;`"),
    ],
)
def test_bad_arguments_get_a_clear_answer_and_change_nothing(desk, text, expected):
    email_ticket(desk)
    before = counts(desk)
    reply = desk_cmd(desk, text)
    assert not reply.ok
    assert expected in reply.text
    assert counts(desk) == before


def test_thread_commands_act_on_the_threads_ticket_and_show_thread_usage(desk):
    email_ticket(desk)
    email_ticket(desk, subject="Other")
    before = counts(desk)
    reply = thread_cmd(desk, 1, "close 2")
    assert not reply.ok and reply.text == "I don't understand `2` here. Usage: `!close`"
    assert counts(desk) == before
    assert thread_cmd(desk, 1, "priority").text.endswith("Usage: `!priority low|normal|high|urgent`")
    assert thread_cmd(desk, 1, "close").ok
    with desk.db.transaction() as s:
        statuses = {number: status for number, status in s.execute(select(Ticket.number, Ticket.status))}
    assert statuses == {1: "closed", 2: "open"}
    assert thread_cmd(desk, 99, "close").text == "There is no ticket #99."
    assert not thread_cmd(desk, 1, "").ok


@pytest.mark.parametrize(
    "text",
    [
        "new dan@globex.example Hello",
        "note 1 hi",
        "status 1 closed",
        "close 1",
        "reopen 1",
        "assign 1 me",
        "unassign 1",
        "priority 1 high",
        "label 1 +bug",
        "labels",
        "label-create bug",
        "link 1 2",
        "unlink 1 2",
        "merge 1 into 2",
        "cc 1 add bob@example.com",
        "show 1",
        "list",
        "search printer",
        "customer dan@globex.example",
        "stats",
        "help",
        "frobnicate",
    ],
)
def test_only_staff_may_run_commands(desk, text):
    email_ticket(desk)
    email_ticket(desk, subject="Other")
    before = counts(desk)
    outsider = CommandContext(desk, OUTSIDER, "Dan", False)
    for reply in (run_desk_command(outsider, text), run_thread_command(outsider, 1, text.split(" 1")[0])):
        assert not reply.ok
        assert reply.text == "Sorry, only members of the support team can do that."
        assert reply.blocks is None
    assert counts(desk) == before
