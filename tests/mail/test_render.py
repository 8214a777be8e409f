"""Markdown bodies rendered to the HTML and text parts of outbound mail."""

from __future__ import annotations

from html.parser import HTMLParser

from mail.render import render_markdown


def text_of(markdown: str) -> str:
    return render_markdown(markdown).text


def fragment_of(markdown: str) -> str:
    return render_markdown(markdown).fragment


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)


def tags_in(html: str) -> TagCollector:
    collector = TagCollector()
    collector.feed(html)
    return collector


# --- the document -------------------------------------------------------------------------------------


def test_html_is_a_complete_document_around_the_fragment():
    body = render_markdown("Hello")
    assert body.html.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in body.html
    assert body.fragment in body.html
    assert body.fragment == "<p>Hello</p>\n"
    assert body.text == "Hello\n"


def test_document_loads_no_external_resource():
    html = render_markdown("![pixel](https://tracker.example/p.png)\n\n[a](https://example.com)").html
    collector = tags_in(html)
    assert "img" not in collector.tags
    assert "link" not in collector.tags
    assert "script" not in collector.tags
    assert all(name != "src" for name, _ in collector.attributes)


def test_empty_body():
    body = render_markdown("")
    assert body.text == ""
    assert body.fragment == ""


# --- inline constructs ----------------------------------------------------------------------------------


def test_bold_italic_strike_and_code():
    markdown = "Some **bold**, *italic*, ~~gone~~ and `x = 1`."
    assert text_of(markdown) == "Some *bold*, _italic_, ~~gone~~ and `x = 1`.\n"
    fragment = fragment_of(markdown)
    assert "<strong>bold</strong>" in fragment
    assert "<em>italic</em>" in fragment
    assert "<s>gone</s>" in fragment
    assert '<code style="' in fragment and ">x = 1</code>" in fragment


def test_link_with_text_shows_text_then_url():
    markdown = "See [the docs](https://docs.example.com/guide)."
    assert text_of(markdown) == "See the docs (https://docs.example.com/guide).\n"
    assert '<a href="https://docs.example.com/guide">the docs</a>' in fragment_of(markdown)


def test_link_whose_text_is_its_url_shows_the_url_once():
    markdown = "[https://example.com/a](https://example.com/a)"
    assert text_of(markdown) == "https://example.com/a\n"


def test_autolink_and_bare_url_and_address():
    markdown = "Go to <https://example.com/ä> or https://bare.example.com/x?y=1, or write to bob@example.com."
    assert text_of(markdown) == (
        "Go to https://example.com/ä or https://bare.example.com/x?y=1, or write to bob@example.com.\n"
    )
    fragment = fragment_of(markdown)
    assert '<a href="https://example.com/%C3%A4">https://example.com/ä</a>' in fragment
    assert '<a href="https://bare.example.com/x?y=1">https://bare.example.com/x?y=1</a>' in fragment
    assert '<a href="mailto:bob@example.com">bob@example.com</a>' in fragment


def test_file_names_are_not_turned_into_links():
    # setup.py looks like a domain under .py; only links with a scheme become links.
    assert "<a " not in fragment_of("Edit setup.py and www.example.com")


def test_link_with_formatted_text():
    assert text_of("[**Read** this](https://example.com)") == "*Read* this (https://example.com)\n"


def test_mailto_link_text_differs():
    assert text_of("[Write us](mailto:help@example.com)") == "Write us (help@example.com)\n"


def test_image_becomes_a_link():
    markdown = "![screenshot](https://files.example.com/s.png)"
    assert text_of(markdown) == "screenshot (https://files.example.com/s.png)\n"
    assert fragment_of(markdown) == '<p><a href="https://files.example.com/s.png">screenshot</a></p>\n'


def test_line_breaks_are_kept():
    assert text_of("one\ntwo  \nthree") == "one\ntwo\nthree\n"
    assert "two<br />" in fragment_of("one\ntwo  \nthree")


# --- blocks --------------------------------------------------------------------------------------------


def test_headings():
    markdown = "# Title\n\n## Section\n\n### Detail\n\ntext"
    assert text_of(markdown) == "Title\n=====\n\nSection\n-------\n\n### Detail\n\ntext\n"
    fragment = fragment_of(markdown)
    assert "<h1>Title</h1>" in fragment and "<h2>Section</h2>" in fragment and "<h3>Detail</h3>" in fragment


def test_paragraphs_are_separated_by_one_blank_line():
    assert text_of("first\n\n\n\nsecond") == "first\n\nsecond\n"


def test_fenced_code_is_indented_and_escaped_in_html():
    markdown = '```python\ndef f():\n    return "<b>"\n```'
    assert text_of(markdown) == '    def f():\n        return "<b>"\n'
    fragment = fragment_of(markdown)
    assert fragment.startswith('<pre style="')
    assert "white-space:pre-wrap" in fragment
    assert "return &quot;&lt;b&gt;&quot;" in fragment or 'return "&lt;b&gt;"' in fragment
    assert "language-python" not in fragment


def test_indented_code_block():
    assert text_of("text\n\n    indented\n\n      more") == "text\n\n    indented\n\n      more\n"
    assert "<pre" in fragment_of("    indented")


def test_blockquote():
    markdown = "> quoted\n> still quoted\n\nafter"
    assert text_of(markdown) == "> quoted\n> still quoted\n\nafter\n"
    fragment = fragment_of(markdown)
    assert '<blockquote style="' in fragment and "border-left:" in fragment


def test_quote_containing_a_list():
    markdown = "> Steps:\n> 1. restart\n> 2. retry\n>\n> > nested quote"
    assert text_of(markdown) == ("> Steps:\n>\n> 1. restart\n> 2. retry\n>\n> > nested quote\n")
    fragment = fragment_of(markdown)
    assert fragment.index("<blockquote") < fragment.index("<ol>") < fragment.index("</blockquote>")


def test_horizontal_rule():
    assert text_of("above\n\n---\n\nbelow") == "above\n\n--------------------\n\nbelow\n"
    assert "<hr />" in fragment_of("above\n\n---\n\nbelow")


# --- lists ---------------------------------------------------------------------------------------------


def test_bullet_list():
    assert text_of("- one\n- two") == "- one\n- two\n"
    assert fragment_of("- one\n- two") == "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n"


def test_ordered_list_keeps_its_start_number():
    assert text_of("3. three\n4. four") == "3. three\n4. four\n"
    assert '<ol start="3">' in fragment_of("3. three\n4. four")


def test_ordered_list_numbers_align_past_nine():
    markdown = "\n".join(f"{n}. item {n}" for n in range(1, 11))
    lines = text_of(markdown).splitlines()
    assert lines[0] == "1.  item 1"
    assert lines[9] == "10. item 10"


def test_nested_lists_three_levels_deep():
    markdown = (
        "1. first\n"
        "2. second\n"
        "   - bullet a\n"
        "   - bullet b\n"
        "     1. deep one\n"
        "     2. deep two\n"
        "        continued\n"
        "3. third\n"
    )
    assert text_of(markdown) == (
        "1. first\n"
        "2. second\n"
        "   - bullet a\n"
        "   - bullet b\n"
        "     1. deep one\n"
        "     2. deep two\n"
        "        continued\n"
        "3. third\n"
    )
    fragment = fragment_of(markdown)
    assert fragment.count("<ol>") == 2 and fragment.count("<ul>") == 1
    assert "<li>deep two\ncontinued</li>" in fragment


def test_loose_list_keeps_blank_lines_between_items():
    assert text_of("- one\n\n- two\n\n  second paragraph") == "- one\n\n- two\n\n  second paragraph\n"


def test_list_item_with_code_block():
    markdown = "1. run:\n\n   ```\n   make\n   ```\n2. done"
    assert text_of(markdown) == "1. run:\n\n       make\n\n2. done\n"


# --- hostile input --------------------------------------------------------------------------------------


def test_raw_html_is_escaped_never_passed_through():
    markdown = "Hi <script>alert(1)</script> <img src=x onerror=alert(2)>\n\n<div>block</div>"
    body = render_markdown(markdown)
    assert "<script>" not in body.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body.fragment
    assert "&lt;img src=x onerror=alert(2)&gt;" in body.fragment
    assert "&lt;div&gt;block&lt;/div&gt;" in body.fragment
    collector = tags_in(body.html)
    assert "script" not in collector.tags and "img" not in collector.tags and "div" not in collector.tags
    # The text part is plain text: the customer's characters are shown as they were written.
    assert body.text == "Hi <script>alert(1)</script> <img src=x onerror=alert(2)>\n\n<div>block</div>\n"


def test_javascript_links_are_not_links():
    fragment = fragment_of("[click](javascript:alert(1)) and <javascript:alert(2)>")
    assert "href" not in fragment


def test_attribute_breaking_characters_in_urls_are_escaped():
    fragment = fragment_of('[x](https://example.com/"onmouseover="alert(1))')
    collector = tags_in(fragment)
    assert [name for name, _ in collector.attributes] == ["href"]


def test_html_entities_are_decoded_in_text_and_kept_escaped_in_html():
    body = render_markdown("Tom &amp; Jerry &lt;3")
    assert body.text == "Tom & Jerry <3\n"
    assert "Tom &amp; Jerry &lt;3" in body.fragment
