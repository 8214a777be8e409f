"""Canonical Markdown -> Slack mrkdwn, and splitting into messages within Slack's limits."""

import re

import pytest
from slack_sdk.models.blocks import Block

from bot.text import DictMentionResolver, markdown_to_mrkdwn, message_payloads, rich_text_to_markdown
from bot.text.split import MAX_BLOCKS, MESSAGE_BUDGET, SECTION_LIMIT, TEXT_LIMIT, mrkdwn_to_plain


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("# Title\n\nbody", "*Title*\n\nbody"),
        ("## **Bold** title", "*Bold title*"),
        ("**b** *i* _i_ ~~s~~ `c`", "*b* _i_ _i_ ~s~ `c`"),
        ("***both***", "_*both*_"),
        ("[text](https://x.example/?a=1&b=2)", "<https://x.example/?a=1&amp;b=2|text>"),
        ("<https://x.example>", "<https://x.example>"),
        ("[a|b > c](https://x.example/p|q)", "<https://x.example/p%7Cq|a|b &gt; c>"),
        ("[dan@globex.example](mailto:dan@globex.example)", "<mailto:dan@globex.example|dan@globex.example>"),
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("`x < y`", "`x &lt; y`"),
        ("literal \\*stars\\*", "literal *stars*"),
        ("line one  \nline two\nsoft", "line one\nline two\nsoft"),
        ("> quoted\n> more\n\nafter", "> quoted\n> more\n\nafter"),
        ("```python\nif a < b:\n    pass\n```", "```\nif a &lt; b:\n    pass\n```"),
        (
            "- one\n- two\n  - nested\n    - deeper\n- three",
            "• one\n• two\n    ◦ nested\n        ▪ deeper\n• three",
        ),
        ("3. three\n4. four", "3. three\n4. four"),
        ("---", "───────"),
        ("<b>raw html</b>", "&lt;b&gt;raw html&lt;/b&gt;"),
        ("![logo](https://x.example/l.png)", "<https://x.example/l.png|logo>"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "*a | b*\n1 | 2"),
    ],
)
def test_markdown_to_mrkdwn(markdown, expected):
    assert markdown_to_mrkdwn(markdown) == expected


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        # Inside <…> these are Slack syntax: an @channel / @here ping, a user, a channel, a group.
        ("[see invoice](!channel)", "see invoice"),
        ("[urgent](!here)", "urgent"),
        ("[your manager](@U0BOSS)", "your manager"),
        ("[the room](#C0GENERAL)", "the room"),
        ("[team](<!subteam^S0ONCALL|@oncall>)", "team"),
        ("[](!channel)", "!channel"),
        ("![logo](!everyone)", "logo"),
        ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),  # not even a link in Markdown
        ("![pic](data:image/png;base64,AAAA)", "pic"),
        ("[page](/account/pay) [top](#top) [elsewhere](//evil.example/x)", "page top elsewhere"),
        ("<foo:bar> [image](cid:part1@mail)", "foo:bar image"),
        ("[x](http:no-host)", "x"),
    ],
)
def test_a_link_to_anything_but_a_real_url_is_its_label(markdown, expected):
    assert markdown_to_mrkdwn(markdown) == expected


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        (
            "[https://bank.example/pay](https://evil.example/pay)",
            "https://bank.example/pay (<https://evil.example/pay>)",
        ),
        ("[bank.example](https://evil.example)", "bank.example (<https://evil.example>)"),
        ("[ceo@bank.example](mailto:eve@evil.example)", "ceo@bank.example (<mailto:eve@evil.example>)"),
        ("[www.bank.example](mailto:eve@evil.example)", "www.bank.example (<mailto:eve@evil.example>)"),
        # the same place, written another way, stays a plain link
        ("[bank.example](https://www.bank.example/login)", "<https://www.bank.example/login|bank.example>"),
        ("[HTTPS://Bank.example](https://bank.example/)", "<https://bank.example/|HTTPS://Bank.example>"),
        (
            "[Dan@globex.example](mailto:dan@globex.example?subject=Hi)",
            "<mailto:dan@globex.example?subject=Hi|Dan@globex.example>",
        ),
        # a label naming a place in its words, or one with a path
        ("[log in at bank.example](https://evil.example)", "log in at bank.example (<https://evil.example>)"),
        (
            "[https://bank.example/ now](https://evil.example/)",
            "https://bank.example/ now (<https://evil.example/>)",
        ),
        (
            "[www.bank.example/login.html](https://evil.example/steal)",
            "www.bank.example/login.html (<https://evil.example/steal>)",
        ),
        (
            "[bank.example/invoice.pdf](https://evil.example)",
            "bank.example/invoice.pdf (<https://evil.example>)",
        ),
        (
            "[sign in at bank.example](https://bank.example/login)",
            "<https://bank.example/login|sign in at bank.example>",
        ),
        ("[click here](https://evil.example)", "<https://evil.example|click here>"),
        # a file's name is not a domain
        ("[report.docx](https://drive.example/file/123)", "<https://drive.example/file/123|report.docx>"),
        ("[Invoice.PDF](https://billing.example/i/9)", "<https://billing.example/i/9|Invoice.PDF>"),
        ("[call us](tel:+15550100)", "<tel:+15550100|call us>"),
        ("[x](HTTPS://X.EXAMPLE/a)", "<HTTPS://X.EXAMPLE/a|x>"),
    ],
)
def test_a_label_naming_another_address_shows_where_the_link_goes(markdown, expected):
    assert markdown_to_mrkdwn(markdown) == expected


def test_customer_links_in_a_posted_message_mention_nobody():
    markdown = "Hi [all](!channel), [boss](@U0BOSS) [chan](#C0GENERAL) [grp](!subteam^S0ONCALL) [ok](https://x.example)"
    sections = [block["text"]["text"] for p in message_payloads(markdown) for block in p["blocks"]]
    assert sections == ["Hi all, boss chan grp <https://x.example|ok>"]


def test_round_trip_from_slack_rich_text():
    resolver = DictMentionResolver(users={"U1": "Alice"})
    blocks = [
        {
            "type": "rich_text",
            "elements": [
                {
                    "type": "rich_text_section",
                    "elements": [
                        {"type": "text", "text": "Hi "},
                        {"type": "user", "user_id": "U1"},
                        {"type": "text", "text": ", see ", "style": {}},
                        {"type": "text", "text": "this", "style": {"bold": True}},
                        {"type": "text", "text": " & 2*3\n"},
                    ],
                },
                {
                    "type": "rich_text_list",
                    "style": "bullet",
                    "elements": [
                        {"type": "rich_text_section", "elements": [{"type": "text", "text": "item"}]}
                    ],
                },
            ],
        }
    ]
    markdown = rich_text_to_markdown(blocks, resolver)
    assert markdown_to_mrkdwn(markdown) == "Hi @Alice, see *this* &amp; 2*3\n\n• item"


def assert_valid(payloads):
    for payload in payloads:
        assert len(payload["text"]) <= TEXT_LIMIT
        assert 0 < len(payload["blocks"]) <= MAX_BLOCKS
        total = 0
        for block in payload["blocks"]:
            Block.parse(block).validate_json()  # slack_sdk's own limit checks
            text = block["text"]["text"] if block["type"] == "section" else block["elements"][0]["text"]
            assert len(text) <= SECTION_LIMIT
            total += len(text)
        assert total <= MESSAGE_BUDGET


def test_short_message_is_one_payload():
    payloads = message_payloads("Hello **there**", header="*Dan* via email")
    assert payloads == [
        {
            "text": "Dan via email\n\nHello there",
            "blocks": [
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "*Dan* via email"}]},
                {"type": "section", "text": {"type": "mrkdwn", "text": "Hello *there*"}},
            ],
        }
    ]


def test_empty_content():
    assert message_payloads("") == []
    assert len(message_payloads("", header="hdr")) == 1


def test_long_text_splits_into_several_payloads_under_the_limits():
    paragraphs = [f"Paragraph {n} " + "word & more " * 40 for n in range(200)]
    payloads = message_payloads("\n\n".join(paragraphs), header="From Dan")
    assert len(payloads) > 1
    assert_valid(payloads)
    joined = "\n\n".join(
        block["text"]["text"] for p in payloads for block in p["blocks"] if block["type"] == "section"
    )
    for n in (0, 99, 199):
        assert f"Paragraph {n} " in joined
    assert payloads[0]["blocks"][0]["elements"][0]["text"] == "From Dan"
    # Every later part says whose it is: bare, it would read as the desk's own words.
    for later in payloads[1:]:
        assert later["blocks"][0]["elements"][0]["text"] == "From Dan _(continued)_"
        assert later["text"].startswith("From Dan (continued)")
        assert all(block["type"] == "section" for block in later["blocks"][1:])


def test_one_huge_line_is_cut_at_spaces_not_inside_links_or_entities():
    line = " ".join(["a&b", "[link text](https://example.com/some/long/path)"] * 600)
    payloads = message_payloads(line)
    assert_valid(payloads)
    for payload in payloads:
        for block in payload["blocks"]:
            text = block["text"]["text"]
            assert text.count("<") == text.count(">")
            assert not re.search(r"&(?!amp;|lt;|gt;)", text)


def test_code_fence_split_is_closed_and_reopened():
    code = "\n".join(f"line {n} <tag> & stuff" for n in range(800))
    payloads = message_payloads(f"Before\n\n```\n{code}\n```\n\nAfter")
    assert_valid(payloads)
    sections = [block["text"]["text"] for p in payloads for block in p["blocks"]]
    assert len(sections) > 2
    for text in sections:
        assert text.count("```") % 2 == 0, text[:80]
    body = "\n".join(sections)
    assert "line 0 &lt;tag&gt; &amp; stuff" in body and "line 799 &lt;tag&gt;" in body


def test_code_fence_inside_a_list_item_split_is_closed_and_reopened():
    code = "\n".join(f"    step {n}" for n in range(600))
    payloads = message_payloads(f"- item\n\n  ```\n{code}\n  ```")
    assert_valid(payloads)
    for payload in payloads:
        for block in payload["blocks"]:
            assert block["text"]["text"].count("```") % 2 == 0


def test_quote_continuation_stays_quoted():
    payloads = message_payloads("> " + "quoted words " * 600)
    assert_valid(payloads)
    for payload in payloads:
        for block in payload["blocks"]:
            assert block["text"]["text"].startswith("> ")


def test_plain_fallback():
    assert (
        mrkdwn_to_plain("*b* _i_ ~s~ <https://x|label> <https://y>\n```\ncode\n```")
        == "b i s label https://y\ncode"
    )
