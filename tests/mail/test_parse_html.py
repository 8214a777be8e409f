"""Customer HTML: sanitised, bounded, quote markers trimmed, converted to readable Markdown."""

from __future__ import annotations

import pytest

from mail.html_to_markdown import html_to_markdown, sanitize_html
from mail.inbound_html_limit import limit_html


def test_scripts_styles_head_and_dangerous_links_are_dropped() -> None:
    html = (
        "<html><head><title>T</title><style>p{color:red}</style><meta charset=utf-8></head><body>"
        "<p onclick='steal()'>Hi <a href='javascript:alert(1)'>there</a></p>"
        "<script>document.cookie</script><iframe src='https://evil.example'>framed</iframe>"
        "<p><a href='https://ok.example/x'>link</a> and <a href='mailto:a@b.example'>a@b.example</a></p>"
        "</body></html>"
    )
    markdown = html_to_markdown(html).markdown
    assert markdown == "Hi there\n\n[link](https://ok.example/x) and a@b.example"
    cleaned, _ = sanitize_html(html)
    for gone in ("script", "style", "onclick", "javascript", "iframe", "color:red"):
        assert gone not in cleaned


def test_relative_links_and_images_keep_only_their_words() -> None:
    html = (
        '<p>Hello <a href="!channel">see invoice</a>, <a href="@U0BOSS">your manager</a>, '
        '<a href="#C0GENERAL">the room</a>, <a href="/pay">pay</a>, <a href="//evil.example/x">more</a> '
        '<img src="logo.png" alt="logo"> <a href="data:text/html,x">data</a> '
        '<a href="https://ok.example/x">ok</a> <a href="mailto:a@b.example">write</a></p>'
    )
    assert html_to_markdown(html).markdown == (
        "Hello see invoice, your manager, the room, pay, more logo data "
        "[ok](https://ok.example/x) [write](mailto:a@b.example)"
    )


def test_structure_becomes_markdown() -> None:
    html = (
        "<h2>Steps</h2><ol><li>Open <b>Settings</b></li><li>Click <i>Reset</i></li></ol>"
        "<blockquote>quoted words</blockquote><pre><code>x = 1\ny = 2</code></pre>"
        "<table><tr><th>Item</th><th>Qty</th></tr><tr><td>Paper</td><td>3</td></tr></table>"
    )
    markdown = html_to_markdown(html).markdown
    assert "## Steps" in markdown
    assert "1. Open **Settings**" in markdown and "2. Click *Reset*" in markdown
    assert "> quoted words" in markdown
    assert "x = 1\ny = 2" in markdown
    assert "| Item | Qty |" in markdown and "| Paper | 3 |" in markdown


def test_layout_tables_read_as_paragraphs() -> None:
    html = (
        "<table><tr><td><table><tr><td><p>Welcome</p><p>Second line</p></td></tr></table></td></tr></table>"
    )
    assert html_to_markdown(html).markdown == "Welcome\n\nSecond line"


def test_images_cid_references_and_tracking_pixels() -> None:
    html = (
        '<p>Look: <img src="cid:Shot@Client" alt="shot"></p>'
        '<p><img src="https://t.example/open.gif" width="1" height="1"></p>'
        '<p><img src="https://img.example/chart.png" alt="chart"></p>'
    )
    markdown = html_to_markdown(html, cid_names={"shot@client": "screen.png"}).markdown
    assert markdown == "Look: [image: screen.png]\n\n![chart](https://img.example/chart.png)"


QUOTE = "<div>old message words</div>"
NEW = "<div>New words</div>"


@pytest.mark.parametrize(
    "marked_history",
    [
        f'<div class="gmail_quote">On Mon, X wrote:<blockquote>{QUOTE}</blockquote></div>',
        f'<blockquote type="cite">{QUOTE}</blockquote>',
        f'<div class="moz-cite-prefix">On 3/3/25 X wrote:</div><blockquote>{QUOTE}</blockquote>',
        f'<div class="yahoo_quoted">{QUOTE}</div>',
        f'<div id="divRplyFwdMsg"><b>From:</b> X</div>{QUOTE}',
        f'<span id="OLK_SRC_BODY_SECTION"><b>From:</b> X</span>{QUOTE}',
        f'<hr id="stopSpelling">{QUOTE}',
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in">'
        f"<p><b>From:</b> X<br><b>Sent:</b> Monday</p></div>{QUOTE}",
        f'<div class="gmail_signature">Pat, ACME</div><div class="gmail_quote">{QUOTE}</div>',
    ],
)
def test_quote_markers_trim_the_history(marked_history: str) -> None:
    conversion = html_to_markdown(NEW + marked_history)
    assert conversion.reply_markdown == "New words"
    assert "old message words" in conversion.markdown


def test_a_quote_with_the_customer_writing_after_it_stays() -> None:
    html = '<blockquote type="cite">Which model?</blockquote><div>The X200.</div>'
    conversion = html_to_markdown(html)
    assert conversion.reply_markdown == conversion.markdown == "> Which model?\n\nThe X200."


def test_a_marker_nested_in_kept_history_does_not_cut_the_reply() -> None:
    html = (
        '<blockquote type="cite">Q1?<div id="divRplyFwdMsg">From: older</div></blockquote>'
        "<div>Answer one.</div>"
    )
    assert "Answer one." in html_to_markdown(html).reply_markdown


def test_limiter_bounds_depth_keeps_text_and_drops_comments() -> None:
    limited = limit_html(
        "<!doctype html><!-- hidden --><div>" * 3 + "<b>" * 300 + "deep" + "</b>" * 300, max_depth=50
    )
    assert limited.truncated
    assert "deep" in limited.html and "hidden" not in limited.html and "doctype" not in limited.html
    assert limited.html.count("<b>") <= 50


def test_limiter_treats_stray_brackets_as_text() -> None:
    assert limit_html("a < b and <3 and <unclosed").html == "a &lt; b and &lt;3 and &lt;unclosed"
    assert html_to_markdown("if a < b then c > d").markdown == "if a < b then c > d"


def test_limiter_cuts_oversized_html() -> None:
    limited = limit_html("<p>" + "x" * 200 + "</p>", max_chars=100)
    assert limited.truncated and len(limited.html) < 120
