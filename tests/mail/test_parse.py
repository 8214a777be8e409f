"""parse_email: headers, bodies, attachments and hostile input, on hand-written messages."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.text.to_slack import escape_mrkdwn, markdown_to_mrkdwn
from mail.inbound_headers import HASHED_ID_DOMAIN
from mail.parse import NO_SUBJECT, InboundEmail, header_message_id, parse_email
from mail.render import render_markdown

FIXTURES = Path(__file__).parent / "fixtures"
HTML_TAG = re.compile(r"</?(html|head|body|div|p|span|b|i|a|ul|li|hr|br|script|style|table|td|img)\b", re.I)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def message(
    headers: str, body: str = "Hello\r\n", *, content_type: str = "text/plain; charset=utf-8"
) -> bytes:
    head = headers.strip("\n").replace("\n", "\r\n")
    return f"{head}\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n{body}".encode(
        "utf-8", errors="surrogateescape"
    )


def test_plain_request_fields() -> None:
    raw = message(
        """From: "Ada Lovelace" <Ada@Example.COM>
To: Support <support@desk.example>, other@example.org
Cc: bob@example.org, "Carol, C." <carol@example.org>, not-an-address
Reply-To: ada.home@example.com
Delivered-To: support+abc@desk.example
X-Original-To: support@desk.example
Subject: Printer broken
Date: Mon, 03 Mar 2025 10:00:00 +0100
Message-ID: <abc-123@example.com>
In-Reply-To: <prev@desk.example>
References: <root@desk.example>
 <prev@desk.example>""",
        "The printer is broken.\r\n",
    )
    email = parse_email(raw)
    assert isinstance(email, InboundEmail)
    assert email.message_id == "abc-123@example.com"
    assert email.from_address == "ada@example.com"
    assert email.from_name == "Ada Lovelace"
    assert email.to == ("support@desk.example", "other@example.org")
    assert email.cc == ("bob@example.org", "carol@example.org")
    assert email.reply_to == ("ada.home@example.com",)
    assert email.delivered_to == ("support+abc@desk.example", "support@desk.example")
    assert email.subject == "Printer broken"
    assert email.in_reply_to == ("prev@desk.example",)
    assert email.references == ("root@desk.example", "prev@desk.example")
    assert email.date == datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    assert email.body_markdown == "The printer is broken."
    assert email.reply_markdown == "The printer is broken."
    assert email.classification == "request"
    assert email.bounce is None
    assert not email.truncated


def test_display_name_that_looks_like_an_address_is_never_the_sender() -> None:
    quoted = parse_email(message('From: "ceo@bank.example" <evil@x.example>'))
    assert quoted.from_address == "evil@x.example"
    assert quoted.from_name == "ceo@bank.example"
    unquoted = parse_email(message("From: ceo@bank.example <evil@x.example>"))
    assert unquoted.from_address == "evil@x.example"


def test_crlf_and_controls_are_stripped_from_names_and_subjects() -> None:
    raw = message(
        "From: =?utf-8?q?Eve=0D=0ABcc=3A_all=40x=2Eexample?= <eve@x.example>\n"
        "Subject: =?utf-8?q?Hi=0D=0AX-Injected=3A_1=07_there?=\n"
        "Message-ID: <m@x>"
    )
    email = parse_email(raw)
    assert email.from_name == "Eve Bcc: all@x.example"
    assert email.subject == "Hi X-Injected: 1 there"
    assert "\r" not in email.from_name + email.subject and "\n" not in email.from_name + email.subject


def test_missing_display_name_falls_back_to_the_local_part_and_empty_subject_is_named() -> None:
    email = parse_email(message("From: jo.smith@example.com\nSubject:   \nMessage-ID: <m@x>"))
    assert email.from_name == "jo.smith"
    assert email.subject == NO_SUBJECT


def test_encoded_display_name_with_a_comma_stays_one_address() -> None:
    email = parse_email(message("From: =?iso-8859-1?Q?Last=DFlName=2C_FirstName?= <comma.name@example.com>"))
    assert email.from_address == "comma.name@example.com"
    assert email.from_name == "LastßlName, FirstName"


def test_subject_encoded_words_split_inside_a_character_are_joined() -> None:
    # "日本" in UTF-8 is e6 97 a5 e6 9c ac; the first word ends in the middle of the second char.
    email = parse_email(message("Subject: =?utf-8?b?5pel5g==?= =?utf-8?b?nKw=?=\nMessage-ID: <m@x>"))
    assert email.subject == "日本"


@pytest.mark.parametrize(
    ("charset", "data", "expected"),
    [
        ("iso-8859-2", "Žluťoučký kůň".encode("iso-8859-2"), "Žluťoučký kůň"),
        ("iso-8859-1", "café déjà".encode(), "café déjà"),  # UTF-8 mislabelled as latin-1
        ("utf-8", "naïve".encode("latin-1"), "naïve"),  # latin-1 mislabelled as UTF-8
        ("gb2312", "你好，世界".encode("gbk"), "你好，世界"),  # GBK labelled gb2312
        ("x-unknown", "Grüße".encode("cp1252"), "Grüße"),
        ("", "Grüße".encode("cp1252"), "Grüße"),
        ("utf-16", "hello".encode("utf-16"), "hello"),
        ("iso-2022-jp", "こんにちは".encode("iso-2022-jp"), "こんにちは"),
        ("zlib", b"plain", "plain"),  # a codec that is not a charset is never applied
    ],
)
def test_body_charsets_declared_wrongly_or_unknown_still_decode(
    charset: str, data: bytes, expected: str
) -> None:
    head = "From: a@b.example\r\nMessage-ID: <m@x>\r\nMIME-Version: 1.0\r\n"
    content_type = f"Content-Type: text/plain; charset={charset}\r\n" if charset else ""
    raw = head.encode() + content_type.encode() + b"Content-Transfer-Encoding: 8bit\r\n\r\n" + data
    assert parse_email(raw).body_markdown == expected


def test_invalid_utf8_and_raw_8bit_headers_are_accepted() -> None:
    raw = (
        b"From: J\xc3\xbcrgen <j\xc3\xbcrgen@example.de>\r\nTo: d\xc3\xa4ngl@example.com\r\n"
        b"Subject: caf\xe9\r\nMessage-ID: <m@x>\r\n\r\nbroken \xff\xfe bytes\r\n"
    )
    email = parse_email(raw)
    assert email.from_name == "Jürgen"
    assert email.from_address == "jürgen@example.de"
    assert email.to == ("dängl@example.com",)
    assert email.subject == "café"
    assert email.body_markdown.startswith("broken")


@pytest.mark.parametrize("charset", ["utf-8", ""])
def test_utf8_with_a_few_broken_bytes_stays_utf8(charset: str) -> None:
    # A mailer cut a line inside a character, and another byte is plain garbage: the rest is still UTF-8.
    data = "Grüße aus München, bitte prüfen Sie die Rechnung für März.\r\n請求書".encode()
    data += b"\r\n" + "Schöne Grüß".encode()[:-1] + b"\r\n\xff ok"
    head = "From: a@b.example\r\nMessage-ID: <m@x>\r\nMIME-Version: 1.0\r\n"
    content_type = f"Content-Type: text/plain; charset={charset}\r\n" if charset else ""
    raw = head.encode() + content_type.encode() + b"Content-Transfer-Encoding: 8bit\r\n\r\n" + data
    assert parse_email(raw).body_markdown == (
        "Grüße aus München, bitte prüfen Sie die Rechnung für März.\n請求書\nSchöne Grü\ufffd\n\ufffd ok"
    )


def test_utf8_subject_cut_inside_a_character_stays_utf8() -> None:
    # A gateway cut the encoded word at a byte count, inside the "ü" of "Gebühr".
    cut = base64.b64encode("Rechnung für März – Frage zur Gebühr".encode()[:-3]).decode()
    email = parse_email(message(f"Subject: =?utf-8?B?{cut}?=\nMessage-ID: <m@x>"))
    assert email.subject == "Rechnung für März – Frage zur Geb\ufffd"
    raw_8bit = b"From: a@b.example\r\nSubject: Gr\xc3\xbc\xc3\x9fe \xff\r\nMessage-ID: <m@x>\r\n\r\nhi\r\n"
    assert parse_email(raw_8bit).subject == "Grüße \ufffd"  # RFC 6532 raw UTF-8, one byte broken


def test_message_id_fallback_is_a_stable_hash_without_trace_headers() -> None:
    body = message("From: a@b.example\nSubject: no id")
    first = parse_email(b"Received: from one.example\r\n" + body)
    second = parse_email(b"Received: from two.example\r\nReturn-Path: <x@y>\r\n" + body)
    assert first.message_id == second.message_id
    assert first.message_id.startswith("sha256-") and first.message_id.endswith(f"@{HASHED_ID_DOMAIN}")
    assert header_message_id(b"Received: from one.example\r\n" + body) == first.message_id
    assert parse_email(message("From: a@b.example\nSubject: other")).message_id != first.message_id


def test_header_message_id_reads_only_the_header_block() -> None:
    raw = b"Subject: x\r\nMessage-Id:\r\n  <Folded@Example.com>\r\n\r\nMessage-ID: <body@x>\r\n"
    assert header_message_id(raw) == "Folded@Example.com"
    assert parse_email(raw).message_id == "Folded@Example.com"
    unbracketed = b"Message-ID: bare-id@example.com\r\n\r\nhi"
    assert header_message_id(unbracketed) == "bare-id@example.com"


def test_html_only_mail_becomes_sanitised_markdown() -> None:
    email = parse_email(fixture("outlook_html_reply.eml"))
    body = email.body_markdown
    assert "**blank pages**" in body and "[photo](https://photos.example/p/1)" in body
    assert "- Tray 1: empty" in body
    assert not HTML_TAG.search(body)
    for leftover in ("alert", "MsoNormal", "margin", "ignored title"):
        assert leftover not in body
    # Outlook's reply header marks where its quoted history starts.
    assert email.reply_markdown.endswith("Thanks, Dana")
    assert "turning it off" in body and "turning it off" not in email.reply_markdown


def test_bottom_posted_flowed_reply_keeps_the_answers() -> None:
    email = parse_email(fixture("apple_bottom_post.eml"))
    assert "It is invoice 2025-0042, the one from February." in email.body_markdown  # RFC 3676 unflowed
    # Plain text, so its quotes are kept as typed (escaped), not made Markdown quotes. Interleaved:
    # the attribution goes, and every answer keeps its question, the first one too.
    assert email.reply_markdown == (
        "\\> Which invoice number is it?\n\\> And which month?\n\n"
        "It is invoice 2025-0042, the one from February.\n\n\\> Did you pay by card?\n\nYes, by card."
    )


@pytest.mark.parametrize(
    "typed",
    [
        "> Which version?\n3.2\n> Which OS?\nWindows 11",  # answers between quoted questions
        "Crash in __init__.py when computing 2*3*4\nOrder #1234\n---\nTotal",  # not emphasis nor a heading
        "- one\n+ two\n1. three\n# four\n***\n[x](y) <b>z</b> &amp; `q` ~~s~~ back\\",
        "a | b\n--|--\n1 | 2",  # no table
    ],
)
def test_a_plain_text_body_shows_as_typed(typed: str) -> None:
    email = parse_email(message("From: a@b.example\nMessage-ID: <m@x>", typed, content_type="text/plain"))
    assert render_markdown(email.body_markdown).text == typed + "\n"
    assert markdown_to_mrkdwn(email.body_markdown) == escape_mrkdwn(typed)


def test_an_indented_block_of_a_plain_text_body_keeps_its_characters() -> None:
    typed = "Steps:\n\n    $ run --flag_a *x*\n\nThanks"
    email = parse_email(message("From: a@b.example\nMessage-ID: <m@x>", typed, content_type="text/plain"))
    assert "$ run --flag_a *x*" in render_markdown(email.body_markdown).text


def test_inline_images_and_attachment_names() -> None:
    email = parse_email(fixture("inline_image.eml"))
    assert email.subject == "Screenshot 📷"
    assert email.from_name == "Renée"
    image, pdf, unnamed = email.attachments
    assert (image.filename, image.content_type, image.inline, image.content_id) == (
        "passwd.png",
        "image/png",
        True,
        "shot-1@client",
    )
    assert image.data.startswith(b"\x89PNG")
    assert pdf.filename == "Résumé evil.pdf" and not pdf.inline and pdf.data.startswith(b"%PDF")
    assert unnamed.filename == "attachment-3.bin"
    assert "[image: passwd.png]" in email.body_markdown


def test_long_attachment_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    name = "é" * 300 + ".pdf"
    raw = message(
        "From: a@b.example\nMessage-ID: <m@x>",
        f"--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--b\r\nContent-Type: application/pdf\r\n"
        f'Content-Disposition: attachment; filename="{name}"\r\n\r\n%PDF\r\n--b--\r\n',
        content_type='multipart/mixed; boundary="b"',
    )
    (attachment,) = parse_email(raw).attachments
    assert len(attachment.filename.encode()) <= 255 and attachment.filename.endswith(".pdf")


def test_alternative_prefers_the_text_part_and_falls_back_to_html() -> None:
    alternative = (
        "--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        "--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p><b>rich</b> version</p>\r\n--a--\r\n"
    )
    headers = "From: a@b.example\nMessage-ID: <m@x>"
    with_text = parse_email(
        message(
            headers,
            alternative.format(text="plain version"),
            content_type='multipart/alternative; boundary="a"',
        )
    )
    assert with_text.body_markdown == "plain version"
    empty_text = parse_email(
        message(headers, alternative.format(text=" "), content_type='multipart/alternative; boundary="a"')
    )
    assert empty_text.body_markdown == "**rich** version"


def test_forwarded_message_attachment_is_kept_and_shown() -> None:
    inner = "From: Vendor <v@vendor.example>\r\nSubject: Quote 7\r\n\r\nPrice is 10.\r\n"
    body = (
        "--f\r\nContent-Type: text/plain\r\n\r\nPlease check the quote below.\r\n"
        f"--f\r\nContent-Type: message/rfc822\r\n\r\n{inner}--f--\r\n"
    )
    email = parse_email(
        message("From: a@b.example\nMessage-ID: <m@x>", body, content_type='multipart/mixed; boundary="f"')
    )
    (eml,) = email.attachments
    assert (eml.filename, eml.content_type) == ("Quote 7.eml", "message/rfc822")
    assert b"Price is 10." in eml.data
    assert "Price is 10." in email.body_markdown
    # Forwarded below the customer's note: what they pass on shows in the thread too, not only in
    # the .eml; the forward's marker goes.
    assert email.reply_markdown.startswith("Please check the quote below.")
    assert "Price is 10." in email.reply_markdown and "Forwarded message" not in email.reply_markdown


def nested_multipart(levels: int) -> bytes:
    head = b"From: deep@example.com\r\nMessage-ID: <deep@x>\r\nMIME-Version: 1.0\r\n"
    head += b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    opening = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1) for i in range(levels)
    )
    leaf = b"--b%d\r\nContent-Type: text/plain\r\n\r\nthe innermost words\r\n" % levels
    closing = b"".join(b"--b%d--\r\n" % i for i in range(levels, -1, -1))
    return head + opening + leaf + closing


@pytest.mark.parametrize("levels", [200, 3000])
def test_deeply_nested_multiparts_are_cut_and_shown_as_text(levels: int) -> None:
    email = parse_email(nested_multipart(levels))
    assert email.truncated
    assert "the innermost words" in email.body_markdown
    assert email.from_address == "deep@example.com"


def test_nesting_within_the_limit_is_not_truncated() -> None:
    email = parse_email(nested_multipart(5))
    assert not email.truncated and email.body_markdown == "the innermost words"


def test_html_bomb_is_bounded() -> None:
    # Both within the size limit, so only depth and attribute limits are at work.
    depth_bomb = "<div>" * 30_000 + "deep text" + "</div>" * 30_000
    attribute_bomb = "<p " + " ".join(f'a{i}="{i}"' for i in range(20_000)) + ">attributes</p>"
    for html in (depth_bomb, attribute_bomb):
        email = parse_email(message("From: a@b.example\nMessage-ID: <m@x>", html, content_type="text/html"))
        assert email.body_markdown.endswith(("deep text", "attributes"))
        assert not HTML_TAG.search(email.body_markdown)
    assert parse_email(message("From: a@b.example", depth_bomb, content_type="text/html")).truncated


def test_oversized_html_is_cut_and_says_so() -> None:
    html = "<p>" + "lorem ipsum " * 100_000 + "</p><p>the end</p>"
    email = parse_email(message("From: a@b.example\nMessage-ID: <m@x>", html, content_type="text/html"))
    assert email.truncated and email.body_markdown.startswith("lorem ipsum")
    assert "the end" not in email.body_markdown


def test_ten_thousand_cc_addresses_parse() -> None:
    cc = ", ".join(f"person{i}@example.com" for i in range(10_000))
    email = parse_email(message(f"From: a@b.example\nCc: {cc}\nMessage-ID: <m@x>"))
    assert len(email.cc) == 10_000 and email.cc[-1] == "person9999@example.com"


def test_boundary_that_never_appears_is_recovered_from_the_delimiter_lines() -> None:
    body = "--real\r\nContent-Type: text/plain\r\n\r\nrecovered text\r\n--real--\r\n"
    email = parse_email(
        message("From: a@b.example", body, content_type='multipart/alternative; boundary="declared"')
    )
    assert email.body_markdown == "recovered text"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"garbage without headers",
        b"\x00\xff" * 1000,
        b"Content-Type: multipart/mixed\r\n\r\n--\r\n--",
        b'Content-Type: multipart/mixed; boundary=""\r\n\r\n----\r\n',
        b'Content-Type: text/plain; charset="\r\n\r\nx',
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64===",
        b"From: <<<>>>\r\nTo: ,,,;;;\r\nDate: yesterday\r\nMessage-ID: <>\r\n\r\nx",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Subject: =?unknown?Q?=ZZ?= =?utf-8?B?####?=\r\n\r\n",
    ],
)
def test_malformed_input_never_raises(raw: bytes) -> None:
    email = parse_email(raw)
    assert email.message_id
    assert email.subject
    assert email.classification in {"request", "auto", "bounce", "list"}


def test_regression_nul_in_a_charset_name_keeps_the_structure(caplog: pytest.LogCaptureFixture) -> None:
    # CPython's get_payload() decodes 8-bit text with the declared charset and raised ValueError
    # on a name holding NUL, which threw the whole message to the last-resort text view.
    raw = (
        b"From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
        b'--x\r\nContent-Type: text/plain; charset="a\x00b"\r\n\r\nbody \xff\r\n--x--\r\n'
    )
    email = parse_email(raw)
    assert email.from_address == "a@b.example" and email.body_markdown.startswith("body")
    assert not caplog.records


def nested_forwards(levels: int) -> bytes:
    head = b"From: chain@example.com\r\nMessage-ID: <chain@x>\r\nMIME-Version: 1.0\r\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="f%d"\r\n\r\n--f%d\r\nContent-Type: message/rfc822\r\n\r\n'
        % (i, i)
        for i in range(levels)
    )
    closing = b"".join(b"\r\n--f%d--\r\n" % i for i in range(levels - 1, -1, -1))
    return head + opening + b"Content-Type: text/plain\r\n\r\nfirst words of the chain\r\n" + closing


@pytest.mark.parametrize("levels", [3, 150, 1_000])
def test_regression_forward_chains_keep_one_eml_and_never_fall_back(
    levels: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Each forwarded level used to be re-serialised as its own .eml (quadratic), and a deep
    # chain made the email package's generator raise RecursionError.
    email = parse_email(nested_forwards(levels))
    assert email.from_address == "chain@example.com"
    assert "first words of the chain" in email.body_markdown
    assert len(email.attachments) <= 1
    assert not caplog.records
    assert email.truncated == (levels > 20)


PIXEL_PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 40


def html_mail(html: str) -> bytes:
    return message("From: a@b.example\nMessage-ID: <m@x>", html, content_type="text/html; charset=utf-8")


def test_an_image_embedded_as_a_data_url_becomes_an_inline_file_shown_where_it_was() -> None:
    data = base64.b64encode(PIXEL_PNG).decode()
    email = parse_email(
        html_mail(
            f'<p>The error:</p><img alt="dialog" src="data:image/png;base64,{data}">'
            f"<p>and again</p><img src='data:image/png;base64,{data[:20]}\n{data[20:]}'><p>Thanks</p>"
        )
    )
    (image,) = email.attachments  # the same image twice is one file
    assert (image.filename, image.content_type, image.data, image.inline) == (
        "image-1.png",
        "image/png",
        PIXEL_PNG,
        True,
    )
    assert email.body_markdown.count("[image: image-1.png]") == 2
    assert "data:" not in email.body_markdown


def test_what_a_data_url_cannot_be_is_not_made_a_file() -> None:
    svg = base64.b64encode(b"<svg onload='alert(1)'/>").decode()
    many = "".join(
        f'<img src="data:image/gif;base64,{base64.b64encode(bytes([i]) * 8).decode()}">' for i in range(30)
    )
    email = parse_email(
        html_mail(f'<img src="data:image/svg+xml;base64,{svg}"><img src="data:image/png;base64,%%%">{many}')
    )
    assert [a.filename for a in email.attachments] == [f"image-{n}.gif" for n in range(1, 21)]  # at most 20
    assert "svg" not in " ".join(a.content_type for a in email.attachments)


def test_a_winmail_dat_that_cannot_be_read_cheaply_is_kept_whole() -> None:
    from mail.inbound_tnef import tnef_files
    from tests.e2e.test_email_mime import winmail_dat

    good = winmail_dat([(b"a.txt", b"one"), (b"b.pdf", b"two")])
    assert tnef_files(good) == [("a.txt", b"one"), ("b.pdf", b"two")]
    assert tnef_files(good[:40]) is None  # truncated
    assert tnef_files(winmail_dat([])) is None  # holds no file
    assert tnef_files(b"PK\x03\x04 not tnef") is None
    # Outlook writes the title in the sender's code page: "Résumé.pdf" keeps its name.
    assert tnef_files(winmail_dat([(b"R\xe9sum\xe9.pdf", b"cv")])) == [("Résumé.pdf", b"cv")]
    # The decoder drops a last record of one byte: rather than lose that file, all is kept whole.
    assert tnef_files(winmail_dat([(b"a.txt", b"one"), (b"b.txt", b"2")])) is None
    # Many tiny records: decoding would cost time quadratic in the size; kept whole instead.
    assert tnef_files(winmail_dat([(b"f", b"")] * 1_000)) is None
