"""Real messages from other projects (the shared corpus): what EXPECT.tsv says, at parse level.

The files stay in the corpus folder (third-party licences); this module skips when it is absent.
Ticket creation and acknowledgements are the intake's tests; here: classification, a readable
body, decoded charsets, the right requester, trimmed quotes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from mail.parse import InboundEmail, parse_email
from mail.render import render_markdown

RAW = Path("/work/shared/corpus/raw")
HTML_TAG = re.compile(
    r"</?(html|head|body|div|p|span|b|i|a|ul|li|hr|br|script|style|table|td|img|font)\b", re.I
)
CSS = re.compile(r"font-family|margin\s*:|@font-face|\{\s*[a-z-]+\s*:", re.I)

pytestmark = pytest.mark.skipif(not (RAW / "EXPECT.tsv").is_file(), reason="raw mail corpus not available")


def expectations() -> list[tuple[str, str, str]]:
    if not (RAW / "EXPECT.tsv").is_file():
        return []
    rows = (RAW / "EXPECT.tsv").read_text(encoding="utf-8").splitlines()[1:]
    fields = [row.split("\t", 2) for row in rows if row.strip()]
    return [(name, kind, what) for name, kind, what in fields]


def parsed(name: str) -> InboundEmail:
    return parse_email((RAW / name).read_bytes())


@pytest.mark.parametrize(("name", "kind", "what"), expectations())
def test_every_message_parses_and_is_classified_as_expected(name: str, kind: str, what: str) -> None:
    email = parsed(name)
    if kind == "request":
        assert email.classification == "request", what
    else:
        assert email.classification != "request", what
        if kind == "bounce":
            assert email.classification == "bounce", what
    assert email.message_id
    assert email.body_markdown.strip(), f"empty body: {what}"
    assert email.reply_markdown.strip(), f"empty reply: {what}"


def html_is_gone(email: InboundEmail) -> None:
    assert not HTML_TAG.search(email.body_markdown)
    assert not CSS.search(email.body_markdown)


def iso_8859_2_decoded(email: InboundEmail) -> None:
    assert email.subject == "Testing encoding iso-8859-2 ťžščľžťťč"
    assert "ťžščľžťťč" in email.body_markdown


def requester_is_from(address: str) -> Callable[[InboundEmail], None]:
    def check(email: InboundEmail) -> None:
        assert email.from_address == address

    return check


def reply_is(text: str) -> Callable[[InboundEmail], None]:
    def check(email: InboundEmail) -> None:
        assert email.reply_markdown == text
        assert len(email.body_markdown) > len(text)  # the history is still in the full body

    return check


def all_quoted_kept(email: InboundEmail) -> None:
    assert "This is an empty quote" in email.reply_markdown


def best_effort_text(email: InboundEmail) -> None:
    shown = render_markdown(email.body_markdown).text  # plain text is stored escaped as Markdown
    assert shown.startswith("Service desk reply!")
    assert "/label ~label2" in shown


def delivery_failure(email: InboundEmail) -> None:
    assert email.bounce is not None
    assert email.bounce.failed_recipients == ("abh@netpar.com.br",)
    assert email.bounce.original_message_ids == ("004801d1fc84$01c934ac$b247f0b7$@infospacemail.com",)


def chinese(*words: str) -> Callable[[InboundEmail], None]:
    def check(email: InboundEmail) -> None:
        text = email.subject + email.body_markdown
        assert all(word in text for word in words)
        assert "\ufffd" not in email.subject

    return check


def comma_in_name(email: InboundEmail) -> None:
    assert (email.from_address, email.from_name) == ("comma.name@example.com", "LastßlName, FirstName")
    assert email.cc == ("simple@example.net", "john.doe@example.com")


def address_as_display_name(email: InboundEmail) -> None:
    assert email.from_address == "bob@example.com"
    assert email.cc == ("frank@example.com",)
    assert email.reply_to == ("ivan@example.com",)


def inline_images(email: InboundEmail) -> None:
    html_is_gone(email)
    assert email.attachments and all(attachment.inline for attachment in email.attachments)


TALON_REPLIES = [
    "android",
    "aol",
    "apple_mail",
    "apple_mail_2",
    "comcast",
    "gmail",
    "hotmail",
    "iphone",
    "outlook",
    "sparrow",
    "thunderbird",
    "yahoo",
]

CHECKS: dict[str, Callable[[InboundEmail], None]] = {
    "gitlab/html_only.eml": html_is_gone,
    "gitlab/service_desk_encoding.eml": iso_8859_2_decoded,
    "gitlab/service_desk_forwarded.eml": requester_is_from("jake@adventuretime.ooo"),
    "gitlab/service_desk_all_quoted.eml": all_quoted_kept,
    "gitlab/service_desk_reply_illegal_utf8.eml": best_effort_text,
    "spamscope/mail_malformed_2.eml": delivery_failure,
    "spamscope/mail_malformed_3.eml": html_is_gone,
    "spamscope/mail_test_6.eml": inline_images,
    "spamscope/mail_test_9.eml": chinese("镜头"),
    "spamscope/mail_test_12.eml": chinese("增值税", "代开"),
    "spamscope/mail_test_17.eml": requester_is_from("notificaccion-clientes@bbva.mx"),
    "spamscope/mail_test_18.eml": comma_in_name,
    "spamscope/mail_test_19.eml": address_as_display_name,
    **{f"talon/{name}.eml": reply_is("Hello") for name in TALON_REPLIES},
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_what_each_message_must_show(name: str) -> None:
    CHECKS[name](parsed(name))
