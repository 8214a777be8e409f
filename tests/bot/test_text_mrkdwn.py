"""Slack mrkdwn (bot and old-client messages) -> canonical Markdown."""

import pytest
from markdown_it import MarkdownIt

from bot.text import DictMentionResolver, message_markdown, mrkdwn_to_markdown

RESOLVER = DictMentionResolver(
    users={"U0ALICE": "Alice Smith"}, channels={"C0GENERAL": "general"}, usergroups={"S0ONCALL": "oncall"}
)
HTML = MarkdownIt("commonmark").enable("strikethrough")


@pytest.mark.parametrize(
    ("mrkdwn", "expected"),
    [
        ("*bold* _italic_ ~strike~", "**bold** _italic_ ~~strike~~"),
        ("*bold _and italic_*", "**bold _and italic_**"),
        ("a*b*c and snake_case_name", "a\\*b\\*c and snake_case_name"),
        ("`a*b` and `&lt;tag&gt;`", "`a*b` and `<tag>`"),
        ("5 &lt; 6 &amp;&amp; 7 &gt; 2", "5 \\< 6 && 7 > 2"),
        ("&amp;lt; stays literal", "\\&lt; stays literal"),
        ("<@U0ALICE> and <@U0ALICE|alice>", "@Alice Smith and @alice"),
        ("<#C0GENERAL> <#C0GENERAL|general> <#C0GENERAL|>", "#general #general #general"),
        ("<!subteam^S0ONCALL> <!subteam^S0ONCALL|@oncall>", "@oncall @oncall"),
        ("<!here> <!channel> <!everyone> <!here|here>", "@here @channel @everyone here"),
        ("<!date^1700000000^{date_num}|Nov 14, 2023>", "Nov 14, 2023"),
        ("<https://example.com/a?x=1&amp;y=2|the site>", "[the site](https://example.com/a?x=1&y=2)"),
        ("<https://example.com>", "<https://example.com>"),
        ("<mailto:dan@globex.example|dan@globex.example>", "[dan@globex.example](mailto:dan@globex.example)"),
        (":wave: :+1::skin-tone-4: :partyparrot: at 10:30:00", "👋 👍🏽 :partyparrot: at 10:30:00"),
        ("# not a heading", "\\# not a heading"),
    ],
)
def test_inline(mrkdwn, expected):
    assert mrkdwn_to_markdown(mrkdwn, RESOLVER) == expected


def test_lines_quotes_and_lists_stay_apart():
    markdown = mrkdwn_to_markdown(
        "first\nsecond\n&gt; quoted\n&gt; more\nafter\n• one\n• *two*\n1. numbered", RESOLVER
    )
    assert markdown == ("first  \nsecond\n\n> quoted  \n> more\n\nafter\n\n- one\n- **two**\n1. numbered")
    assert "<blockquote>\n<p>quoted<br />\nmore</p>\n</blockquote>\n<p>after</p>" in HTML.render(markdown)


def test_block_quote_runs_to_the_end():
    assert mrkdwn_to_markdown("&gt;&gt;&gt; all\nof this\n\nand this", RESOLVER) == (
        "> all  \n> of this\n>\n> and this"
    )


def test_code_block_is_fenced_with_tokens_resolved():
    markdown = mrkdwn_to_markdown("look:\n```if a &lt; b:\n    ping(<@U0ALICE>)```\nok", RESOLVER)
    assert markdown == "look:\n\n```\nif a < b:\n    ping(@Alice Smith)\n```\n\nok"


def test_message_markdown_prefers_rich_text():
    message = {
        "text": "*ignored*",
        "blocks": [
            {
                "type": "rich_text",
                "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": "hi"}]}],
            }
        ],
    }
    assert message_markdown(message, RESOLVER) == "hi"
    assert message_markdown({"text": "*bot*"}, RESOLVER) == "**bot**"
