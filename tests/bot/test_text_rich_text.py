"""Slack rich_text -> canonical Markdown, checked as data and by rendering the Markdown."""

import pytest
from markdown_it import MarkdownIt

from bot.text import DictMentionResolver, markdown_to_mrkdwn, rich_text_to_markdown

RESOLVER = DictMentionResolver(
    users={"U0ALICE": "Alice Smith", "U0SNAKE": "snake_case_bob"},
    channels={"C0GENERAL": "general"},
    usergroups={"S0ONCALL": "oncall"},
)
HTML = MarkdownIt("commonmark").enable("strikethrough")


def text(value, **style):
    element = {"type": "text", "text": value}
    if style:
        element["style"] = style
    return element


def section(*elements):
    return {"type": "rich_text_section", "elements": list(elements)}


def convert(*elements):
    return rich_text_to_markdown([{"type": "rich_text", "elements": list(elements)}], RESOLVER)


def html(markdown):
    return HTML.render(markdown).strip()


@pytest.mark.parametrize(
    ("elements", "expected_markdown", "expected_html"),
    [
        ([text("plain")], "plain", "<p>plain</p>"),
        ([text("bold", bold=True)], "**bold**", "<p><strong>bold</strong></p>"),
        ([text(" spaced ", bold=True), text("x")], "**spaced** x", "<p><strong>spaced</strong> x</p>"),
        (
            [text("all", bold=True, italic=True, strike=True)],
            "~~**_all_**~~",
            "<p><s><strong><em>all</em></strong></s></p>",
        ),
        (
            [text("bold ", bold=True), text("both", bold=True, italic=True), text(" after")],
            "**bold _both_** after",
            "<p><strong>bold <em>both</em></strong> after</p>",
        ),
        (
            [text("ab", bold=True), text("cd", bold=True)],
            "**abcd**",
            "<p><strong>abcd</strong></p>",
        ),
        (
            [text("in"), text("side", italic=True), text("word")],
            "in*side*word",
            "<p>in<em>side</em>word</p>",
        ),
        (
            [text("a", bold=True), text("b", bold=True, italic=True), text("c", italic=True)],
            "**a*b***_c_",
            "<p><strong>a<em>b</em></strong><em>c</em></p>",
        ),
        ([text("x = "), text("a*b", code=True)], "x = `a*b`", "<p>x = <code>a*b</code></p>"),
        ([text("foo", code=True), text("bar", code=True)], "`foobar`", "<p><code>foobar</code></p>"),
        ([text("has `tick`", code=True)], "`` has `tick` ``", "<p><code>has `tick`</code></p>"),
        (
            [text("bold code", code=True, bold=True)],
            "**`bold code`**",
            "<p><strong><code>bold code</code></strong></p>",
        ),
    ],
)
def test_styles_combine_into_valid_markdown(elements, expected_markdown, expected_html):
    markdown = convert(section(*elements))
    assert markdown == expected_markdown
    assert html(markdown) == expected_html


@pytest.mark.parametrize(
    ("typed", "expected_html"),
    [
        ("2*3*4 and _under_ and ~tilde~", "<p>2*3*4 and _under_ and ~tilde~</p>"),
        ("snake_case_name", "<p>snake_case_name</p>"),
        ("a <b> & c &amp; d", "<p>a &lt;b&gt; &amp; c &amp;amp; d</p>"),
        ("[not](a link)", "<p>[not](a link)</p>"),
        ("# not a heading", "<p># not a heading</p>"),
        ("> not a quote", "<p>&gt; not a quote</p>"),
        ("- not a list", "<p>- not a list</p>"),
        ("1. not a list", "<p>1. not a list</p>"),
        ("```", "<p>```</p>"),
        ("back\\slash", "<p>back\\slash</p>"),
    ],
)
def test_customer_punctuation_stays_literal(typed, expected_html):
    assert html(convert(section(text(typed)))) == expected_html


def test_newlines_are_line_breaks_and_blank_lines_paragraphs():
    markdown = convert(section(text("one\ntwo\n\nthree\n")))
    assert markdown == "one  \ntwo\n\nthree"
    assert html(markdown) == "<p>one<br />\ntwo</p>\n<p>three</p>"


def test_style_spanning_a_line_break_is_closed_per_line():
    markdown = convert(section(text("first\nsecond", bold=True)))
    assert markdown == "**first**  \n**second**"


def test_mentions_resolve_to_names():
    markdown = convert(
        section(
            {"type": "user", "user_id": "U0ALICE"},
            text(" and "),
            {"type": "user", "user_id": "U0SNAKE"},
            text(" in "),
            {"type": "channel", "channel_id": "C0GENERAL"},
            text(" cc "),
            {"type": "usergroup", "usergroup_id": "S0ONCALL"},
            text(" "),
            {"type": "broadcast", "range": "here"},
            text(" "),
            {"type": "user", "user_id": "U0UNKNOWN"},
        )
    )
    assert markdown == "@Alice Smith and @snake_case_bob in #general cc @oncall @here @U0UNKNOWN"


def test_bold_mention_is_bold():
    markdown = convert(section({"type": "user", "user_id": "U0ALICE", "style": {"bold": True}}))
    assert markdown == "**@Alice Smith**"


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ({"type": "emoji", "name": "wave", "unicode": "1f44b"}, "👋"),
        ({"type": "emoji", "name": "wave", "unicode": "1f44b-1f3fc", "skin_tone": 3}, "👋🏼"),
        ({"type": "emoji", "name": "+1", "skin_tone": 2}, "👍🏻"),
        ({"type": "emoji", "name": "simple_smile"}, "🙂"),
        ({"type": "emoji", "name": "partyparrot"}, ":partyparrot:"),
        ({"type": "emoji", "name": "party_parrot"}, ":party_parrot:"),
        ({"type": "date", "timestamp": 1700000000, "format": "{date_num}", "fallback": "Nov 14"}, "Nov 14"),
        (
            {"type": "date", "timestamp": 1700000000, "format": "{date_num} at {time}"},
            "2023-11-14 at 22:13 UTC",
        ),
        ({"type": "color", "value": "#F405B3"}, "#F405B3"),
    ],
)
def test_inline_elements(element, expected):
    assert convert(section(element)) == expected


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ({"type": "link", "url": "https://example.com/x"}, "<https://example.com/x>"),
        (
            {"type": "link", "url": "https://example.com/x", "text": "the *docs*"},
            "[the \\*docs\\*](https://example.com/x)",
        ),
        (
            {"type": "link", "url": "https://example.com/a b", "text": "spaced"},
            "[spaced](<https://example.com/a b>)",
        ),
        (
            {"type": "link", "url": "mailto:dan@globex.example", "text": "dan@globex.example"},
            "[dan@globex.example](mailto:dan@globex.example)",
        ),
        (
            {"type": "link", "url": "https://x.example", "text": "go", "style": {"bold": True}},
            "**[go](https://x.example)**",
        ),
    ],
)
def test_links(element, expected):
    assert convert(section(element)) == expected


@pytest.mark.parametrize(
    "url",
    [
        "!channel",
        "!here",
        "@U0BOSS",
        "#C0GENERAL",
        "!subteam^S0ONCALL",
        "<!subteam^S0ONCALL|@oncall>",
        "javascript:alert(1)",
        "data:text/html,<b>x</b>",
        "invoice.pdf",
    ],
)
def test_link_to_anything_but_a_real_url_reaches_slack_as_words(url):
    """A Slack Connect customer's link is copied into the triage thread: there it must not become
    a ping, a mention or a link to somewhere else."""
    mrkdwn = markdown_to_mrkdwn(convert(section({"type": "link", "url": url, "text": "see invoice"})))
    assert "see invoice" in mrkdwn
    assert "<" not in mrkdwn, mrkdwn


def test_real_links_reach_slack_as_links():
    web = convert(section({"type": "link", "url": "https://pay.example/i/1", "text": "see invoice"}))
    mail = convert(section({"type": "link", "url": "mailto:billing@pay.example", "text": "write"}))
    assert markdown_to_mrkdwn(f"{web} {mail}") == (
        "<https://pay.example/i/1|see invoice> <mailto:billing@pay.example|write>"
    )


def test_link_whose_text_names_another_site_shows_the_real_one_in_slack():
    markdown = convert(
        section({"type": "link", "url": "https://evil.example/pay", "text": "https://bank.example/pay"})
    )
    assert markdown_to_mrkdwn(markdown) == "https://bank.example/pay (<https://evil.example/pay>)"


def bullet(indent, *items, style="bullet", offset=None):
    rich_list = {
        "type": "rich_text_list",
        "style": style,
        "indent": indent,
        "elements": [section(text(item)) for item in items],
    }
    if offset is not None:
        rich_list["offset"] = offset
    return rich_list


def test_nested_lists_follow_indent_levels():
    markdown = convert(
        section(text("Steps:\n")),
        bullet(0, "one", "two", style="ordered"),
        bullet(1, "two a", "two b"),
        bullet(2, "deep"),
        bullet(0, "three", style="ordered", offset=2),
        section(text("after")),
    )
    assert markdown == ("Steps:\n\n1. one\n2. two\n   - two a\n   - two b\n     - deep\n3. three\n\nafter")
    assert html(markdown) == (
        "<p>Steps:</p>\n<ol>\n<li>one</li>\n<li>two\n<ul>\n<li>two a</li>\n<li>two b\n<ul>\n"
        "<li>deep</li>\n</ul>\n</li>\n</ul>\n</li>\n<li>three</li>\n</ol>\n<p>after</p>"
    )


def test_list_with_ten_items_nests_under_wider_marker():
    markdown = convert(bullet(0, *[str(n) for n in range(1, 11)], style="ordered"), bullet(1, "sub"))
    assert markdown.endswith("10. 10\n    - sub")
    assert "<li>10\n<ul>\n<li>sub</li>" in html(markdown)


def test_list_indent_cannot_skip_a_level():
    markdown = convert(bullet(0, "top"), bullet(3, "jumped"))
    assert markdown == "- top\n  - jumped"


def test_item_text_that_looks_like_markdown_stays_literal():
    markdown = convert(bullet(0, "1. not nested", "# nor heading"))
    assert html(markdown) == "<ul>\n<li>1. not nested</li>\n<li># nor heading</li>\n</ul>"


def test_item_with_line_break_keeps_it_inside_the_item():
    markdown = convert({"type": "rich_text_list", "style": "bullet", "elements": [section(text("a\nb"))]})
    assert markdown == "- a  \n  b"


def test_list_with_border_is_quoted():
    rich_list = bullet(0, "quoted item")
    rich_list["border"] = 1
    assert convert(rich_list) == "> - quoted item"


def test_preformatted_becomes_a_fence_verbatim():
    markdown = convert(
        {
            "type": "rich_text_preformatted",
            "elements": [
                text("a *b* <c>\n"),
                {"type": "link", "url": "https://x.example"},
                text("\n```inner"),
            ],
        }
    )
    assert markdown == "````\na *b* <c>\nhttps://x.example\n```inner\n````"
    assert html(markdown) == "<pre><code>a *b* &lt;c&gt;\nhttps://x.example\n```inner\n</code></pre>"


def test_quote():
    markdown = convert(
        {
            "type": "rich_text_quote",
            "elements": [text("said "), text("this", italic=True), text("\nand that")],
        }
    )
    assert markdown == "> said _this_  \n> and that"
    assert html(markdown) == "<blockquote>\n<p>said <em>this</em><br />\nand that</p>\n</blockquote>"


def test_blocks_of_bots_keep_their_words():
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Deploy"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*done* by <@U0ALICE>"}},
        {"type": "divider"},
    ]
    assert rich_text_to_markdown(blocks, RESOLVER) == "**Deploy**\n\n**done** by @Alice Smith"


def test_empty_message_is_empty():
    assert rich_text_to_markdown([], RESOLVER) == ""
    assert convert(section(text("   \n"))) == ""


def test_channel_mention_at_line_start_is_not_escaped_as_a_heading():
    markdown = convert(section({"type": "channel", "channel_id": "C0GENERAL"}, text(" is the place")))
    assert markdown == "#general is the place"
    assert html(markdown) == "<p>#general is the place</p>"
