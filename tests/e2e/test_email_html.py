"""An HTML link wrapped around whole paragraphs (newsletters and shop mails do this; corpus
`spamscope/mail_malformed_3.eml`), through SMTP into the running service.

Markdown link text cannot hold a blank line, so `[para one\\n\\npara two](url)` is not a link at all
and reached the triage thread as raw Markdown syntax. DESIGN "Email in" 6: HTML is converted to
Markdown, and the Slack view shows the words (and the link), never markup.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import SMTP

from sqlalchemy import select

from store.models import Message
from tests.e2e.conftest import SUPPORT, RunningDesk


def test_a_link_around_paragraphs_shows_words_and_link_not_markdown_syntax(service: RunningDesk) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Bob <bob@customer.test>", SUPPORT, "Offer"
    message["Message-ID"] = "<wrapped-link@customer.test>"
    message.set_content(
        '<p>Intro</p><a href="http://shop.test/item"><p>Heater for the bath</p><hr>'
        "<p>Dries towels fast</p></a><p>Bye</p>",
        subtype="html",
    )
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the card")
    text = service.wait_for_thread_text(card.ts, "Bye")
    assert "Heater for the bath" in text and "Dries towels fast" in text
    assert "](http" not in text and "[Heater" not in text, text
    assert "http://shop.test/item" in text  # the link itself is not lost


def test_a_pipe_in_a_table_cell_is_text_and_no_cell_is_lost(service: RunningDesk) -> None:
    """A `|` typed in a data table's cell is the cell's text, not a column break: the cells after
    it were dropped from the triage thread. A table without header cells showed an empty header
    row as a line of bare `* | *`."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Bob <bob@customer.test>", SUPPORT, "Plans"
    message["Message-ID"] = "<table-pipes@customer.test>"
    message.set_content(
        "<table><tr><th>Plan</th><th>Price</th><th>Seats</th></tr>"
        "<tr><td>Pro | yearly</td><td><code>a|b</code> 120 EUR</td><td>5 seats</td></tr></table>"
        "<table><tr><td>Order</td><td>42</td></tr><tr><td>Status</td><td>shipped</td></tr></table>"
        "<p>Bye</p>",
        subtype="html",
    )
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the card")
    text = service.wait_for_thread_text(card.ts, "Bye")
    assert "Pro | yearly | `a|b` 120 EUR | 5 seats" in text, text
    # A table without a header row (the usual key/value table) shows no empty, starred first line.
    assert "5 seats\n\nOrder | 42\nStatus | shipped\n\nBye" in text, text


def test_bold_and_italics_across_a_line_break_show_as_formatting(service: RunningDesk) -> None:
    """Slack formats `*bold*` only within one line: a customer's bold signature block
    (`<b>Jane Doe<br>Head of Ops</b>`) showed its asterisks around two plain lines. Bold `Note:`
    set against the next word (`<b>Note:</b>the`) showed as `**Note:**the`."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Jane <jane@customer.test>", SUPPORT, "Access"
    message["Message-ID"] = "<bold-lines@customer.test>"
    message.set_content(
        "<p>Please help.</p><p><b>Jane Doe<br>Head of Ops</b><br><i>Acme<br>Berlin</i> <s>old<br>new</s></p>"
        "<p><b>Name:<br></b>Jane <i><br>Ops</i></p><p><b>Note:</b>the VPN is down, <i>really!</i>Bye</p>",
        subtype="html",
    )
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the card")
    text = service.wait_for_thread_text(card.ts, "Please help.")
    assert "*Jane Doe*\n*Head of Ops*\n_Acme_\n_Berlin_ ~old~\n~new~" in text, text
    # Bold ending in punctuation right before a word cannot close in Markdown and showed its
    # asterisks: the punctuation goes outside the bold.
    assert "*Note*:the VPN is down, _really_!Bye" in text, text
    # A line break at the edge of the bold is kept (the words were glued: `Name:Jane`).
    assert "*Name:*\nJane\n_Ops_" in text, text


def test_links_with_spaces_in_their_address_stay_links(service: RunningDesk) -> None:
    """A browser trims the spaces around an `href` and reads spaces inside it (a SharePoint
    document's address) as `%20`. Here the first link vanished, leaving only its words, and the
    second reached the triage thread as raw `[label](address)` syntax."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Bob <bob@customer.test>", SUPPORT, "Plan"
    message["Message-ID"] = "<spaced-links@customer.test>"
    message.set_content(
        '<p>See <a href=" https://status.example/incident/7\n">the status page</a> and '
        '<a href="https://contoso.sharepoint.com/Shared Documents/Q3 plan.docx">Q3 plan</a> and '
        '<img src="https://cdn.example/a b.png" alt="chart ] 2">. Bye</p>',
        subtype="html",
    )
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the card")
    text = service.wait_for_thread_text(card.ts, "Bye")
    assert "<https://status.example/incident/7|the status page>" in text, text
    assert "<https://contoso.sharepoint.com/Shared%20Documents/Q3%20plan.docx|Q3 plan>" in text, text
    assert "<https://cdn.example/a%20b.png|chart ] 2>" in text, text
    assert "](" not in text, text


def test_a_code_block_holding_three_backticks_stays_one_block(service: RunningDesk) -> None:
    """A customer's `<pre>` quoting Markdown (a line of three backticks inside) closed early: the
    rest of the code showed as text and the words after it as code."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Bob <bob@customer.test>", SUPPORT, "README"
    message["Message-ID"] = "<pre-fence@customer.test>"
    message.set_content(
        "<p>Our README renders wrong:</p><pre>## Setup\n```\npip install *x*\n```</pre><p>Bye</p>",
        subtype="html",
    )
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the card")
    text = service.wait_for_thread_text(card.ts, "Bye")
    # Slack mrkdwn has no escape: a zero-width space keeps the inner fence from closing the block.
    fence = "`\u200b`\u200b`"
    assert f"```\n## Setup\n{fence}\npip install *x*\n{fence}\n```\n\nBye" in text, text


def test_backslashes_in_an_html_mail_arrive_as_typed(service: RunningDesk) -> None:
    """A Windows share (`\\\\fs01\\finance`) lost a backslash on the way into the triage thread:
    Markdown reads `\\\\` as one escaped backslash. Likewise a `]` in a link's words broke the
    link into raw syntax, and `[words](address)` or `<address|words>` typed as text became links."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Bob <bob@customer.test>", SUPPORT, "Share"
    message["Message-ID"] = "<backslashes@customer.test>"
    message.set_content(
        r"<p>Please map \\fs01\finance\_old (not C:\Temp\*.tmp, nor a\\b). "
        '<a href="https://jira.example/browse/IT-7">[IT-7] see ] here</a>, not '
        "[this](https://evil.example) nor &lt;https://evil.example|bank&gt;. Bye</p>",
        subtype="html",
    )
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the card")
    text = service.wait_for_thread_text(card.ts, "Bye")
    assert r"Please map \\fs01\finance\_old (not C:\Temp\*.tmp, nor a\\b). " in text, text
    # Brackets and `<` typed in the text are words too: no raw link syntax, no link made of them.
    assert "<https://jira.example/browse/IT-7|[IT-7] see ] here>, not [this](https://evil.example) " in text
    assert "nor &lt;https://evil.example|bank&gt;. Bye" in text, text


def test_a_link_to_an_international_domain_is_not_flagged_as_leading_elsewhere(
    service: RunningDesk,
) -> None:
    """A link whose words are its own address with an international domain (`münchen.de`, which
    the link itself carries as `xn--mnchen-3ya.de`) was shown as leading somewhere else than it
    says: its address repeated after it, as for a phishing link. And a look-alike domain in
    another script (`pаypal.com`, Cyrillic `а`) on a link elsewhere was not flagged at all."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Bob <bob@customer.test>", SUPPORT, "Portal"
    message["Message-ID"] = "<idn-link@customer.test>"
    message.set_content(
        '<p>Our portal <a href="https://xn--mnchen-3ya.de/portal">https://münchen.de/portal</a> '
        '(also <a href="https://www.xn--mnchen-3ya.de/">münchen.de</a>) is down. '
        'Log in at <a href="https://evil.example/">p\u0430ypal.com</a>. Bye</p>',
        subtype="html",
    )
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the card")
    text = service.wait_for_thread_text(card.ts, "Bye")
    assert "<https://xn--mnchen-3ya.de/portal|https://münchen.de/portal>" in text, text
    assert "<https://www.xn--mnchen-3ya.de/|münchen.de>" in text, text
    # A look-alike with a Cyrillic letter names another place than its link: flagged as before.
    assert "p\u0430ypal.com (<https://evil.example/>)" in text, text


def test_markdown_typed_in_an_html_mail_shows_as_typed(service: RunningDesk) -> None:
    """Words of a customer's HTML mail that read as Markdown at a line start (`# 3 printers`,
    `- not a list`, `1) first`) or in backticks showed as a heading, a list or code in the triage
    thread; and a `<pre>` block lost its blank lines."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Bob <bob@customer.test>", SUPPORT, "Typed"
    message["Message-ID"] = "<typed-markdown@customer.test>"
    message.set_content(
        "<p># 3 printers are down</p><div>- not a list<br>+ nor this<br>1) first</div>"
        "<p>Run `make all` now</p><pre>line one  \n\n\nline four</pre><p>Bye</p>",
        subtype="html",
    )
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the card")
    text = service.wait_for_thread_text(card.ts, "Bye")
    assert "# 3 printers are down\n\n- not a list\n+ nor this\n1) first\n\nRun `make all` now" in text, text
    assert re.search(r"```\nline one *\n\n\nline four\n```", text), text  # its blank lines kept
    with service.db.read() as session:
        [body] = session.scalars(select(Message.body_markdown)).all()
    assert "Run \\`make all\\` now" in body and "line one\n\n\nline four" in body, body
