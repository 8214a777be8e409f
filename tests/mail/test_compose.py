"""Outbound mail composed to bytes, parsed back with the standard library and checked header by header."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

from mail.compose import (
    MAX_ATTACHED_BYTES,
    OutboundAttachment,
    OutboundMail,
    compose,
    compose_attachments_within,
    safe_filename,
)

NOW = datetime(2024, 3, 5, 14, 30, 0, tzinfo=UTC)
EVIL = "Evil\r\nBcc: x@y"


def outbound(**changes: object) -> OutboundMail:
    mail = OutboundMail(
        sender_name="Alice at ACME",
        sender_address="support@acme.test",
        to="Bob Customer <bob@customer.test>",
        cc=("carol@customer.test", "Dan <dan@other.test>"),
        reply_to="support+k3yk3yk3yk3yk3yk3yk3yk3yk3yk@acme.test",
        subject="Re: Printer on fire [#42]",
        text="Hello *Bob*\n",
        html="<!DOCTYPE html><html><body><p>Hello <strong>Bob</strong></p></body></html>\n",
        message_id="reply.7.0123456789@acme.test",
        in_reply_to=None,
        references=(),
        auto_submitted=None,
        list_unsubscribe_url=None,
        list_unsubscribe_mailto=None,
        attachments=(),
    )
    return dataclasses.replace(mail, **changes)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]


def decoded(value: str) -> str:
    # The stdlib's address parser puts a space between adjacent RFC 2047 words inside a display name;
    # mail clients do not, and neither does make_header.
    return str(make_header(decode_header(value)))


# --- structure and headers -----------------------------------------------------------------------------


def test_reply_is_multipart_alternative_with_text_then_html():
    raw = compose(outbound(), now=NOW)
    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert text.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    assert text.get_content() == "Hello *Bob*\n"
    assert html.get_content() == outbound().html
    assert "MIME-Version" not in text and "MIME-Version" not in html


def test_every_header_of_a_human_reply():
    raw = compose(outbound(), now=NOW)
    message = parse(raw)
    assert sorted(header_names(raw)) == sorted(
        ["Content-Type", "MIME-Version", "Date", "Message-ID", "Subject", "From", "To", "Cc", "Reply-To"]
    )
    assert message["MIME-Version"] == "1.0"
    assert message["Date"] == "Tue, 05 Mar 2024 14:30:00 +0000"
    assert message["Message-ID"] == "<reply.7.0123456789@acme.test>"
    assert message["Subject"] == "Re: Printer on fire [#42]"
    assert message["From"] == "Alice at ACME <support@acme.test>"
    assert message["To"] == "Bob Customer <bob@customer.test>"
    assert [a.addr_spec for a in message["Cc"].addresses] == ["carol@customer.test", "dan@other.test"]
    assert message["Reply-To"] == "support+k3yk3yk3yk3yk3yk3yk3yk3yk3yk@acme.test"
    # A human reply is not automatic, and nothing is ever blind-copied.
    for absent in ("Auto-Submitted", "X-Auto-Response-Suppress", "In-Reply-To", "References", "Bcc"):
        assert absent not in message


def test_date_defaults_to_now_with_a_time_zone():
    date = parsedate_to_datetime(parse(compose(outbound()))["Date"])
    assert date.tzinfo is not None


def test_date_in_another_time_zone_keeps_its_offset():
    now = datetime(2024, 3, 5, 15, 30, tzinfo=timezone(timedelta(hours=1)))
    assert parse(compose(outbound(), now=now))["Date"] == "Tue, 05 Mar 2024 15:30:00 +0100"


def test_lines_end_with_crlf_only():
    raw = compose(outbound(attachments=(OutboundAttachment("a.txt", "text/plain", b"x\ny\n"),)), now=NOW)
    assert re.search(rb"(?<!\r)\n", raw) is None
    assert raw.endswith(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998  # RFC 5322 §2.1.1


def test_message_is_ascii_only():
    raw = compose(outbound(subject="Ünïcode ✓", text="Grüße ✓\n", html="<p>Grüße ✓</p>"), now=NOW)
    raw.decode("ascii")
    text, html = parse(raw).iter_parts()
    assert text.get_content() == "Grüße ✓\n"
    assert html.get_content() == "<p>Grüße ✓</p>"


def test_message_id_given_with_brackets_is_not_bracketed_twice():
    assert parse(compose(outbound(message_id="<a@b.test>"), now=NOW))["Message-ID"] == "<a@b.test>"


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a b@c.test", "a@b.test\r\nBcc: x@y", "<a@b>c@d>"])
def test_invalid_message_id_is_refused(bad: str):
    with pytest.raises(ValueError, match="Message-ID"):
        compose(outbound(message_id=bad), now=NOW)


# --- threading ----------------------------------------------------------------------------------------


def test_threading_headers():
    raw = compose(
        outbound(in_reply_to="<c.2@mail.test>", references=("root@mail.test", "<c.2@mail.test>")),
        now=NOW,
    )
    message = parse(raw)
    assert message["In-Reply-To"] == "<c.2@mail.test>"
    assert message["References"] == "<root@mail.test> <c.2@mail.test>"


def test_parent_is_appended_to_references_and_invalid_ids_dropped():
    raw = compose(
        outbound(in_reply_to="parent@mail.test", references=("root@mail.test", "not an id", "x\r\ny@z", "")),
        now=NOW,
    )
    assert parse(raw)["References"] == "<root@mail.test> <parent@mail.test>"


def test_parent_moves_to_the_end_of_references():
    raw = compose(outbound(in_reply_to="p@m.test", references=("p@m.test", "q@m.test")), now=NOW)
    assert parse(raw)["References"] == "<q@m.test> <p@m.test>"


def test_invalid_in_reply_to_is_left_out():
    message = parse(compose(outbound(in_reply_to="garbage"), now=NOW))
    assert "In-Reply-To" not in message and "References" not in message


def test_long_reference_chains_keep_the_root_and_the_latest():
    references = tuple(f"m{n}@mail.test" for n in range(50))
    raw = compose(outbound(in_reply_to="m49@mail.test", references=references), now=NOW)
    ids = parse(raw)["References"].split()
    assert len(ids) == 20
    assert ids[0] == "<m0@mail.test>"
    assert ids[1:] == [f"<m{n}@mail.test>" for n in range(31, 50)]


# --- automatic mail and unsubscribing ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["auto-replied", "auto-generated"])
def test_automatic_mail_says_so(kind: str):
    message = parse(compose(outbound(auto_submitted=kind), now=NOW))
    assert message["Auto-Submitted"] == kind
    assert message["X-Auto-Response-Suppress"] == "All"


def test_invalid_auto_submitted_is_refused():
    with pytest.raises(ValueError, match="Auto-Submitted"):
        compose(outbound(auto_submitted="auto-replied\r\nBcc: x@y"), now=NOW)


def test_list_unsubscribe_with_one_click():
    message = parse(
        compose(
            outbound(
                list_unsubscribe_url="https://desk.acme.test/unsubscribe/k3y?x=1",
                list_unsubscribe_mailto="support+unsub-k3y@acme.test",
            ),
            now=NOW,
        )
    )
    assert message["List-Unsubscribe"] == (
        "<https://desk.acme.test/unsubscribe/k3y?x=1>, <mailto:support+unsub-k3y@acme.test>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_long_list_unsubscribe_and_references_fold_between_items_only():
    # Regression: the stdlib folded a long List-Unsubscribe before its first URL, leaving "List-Unsubscribe: "
    # empty and the value starting with whitespace for parsers that do not unfold (compat32).
    key = "4y67rmnohmzgsxp5mqa6wqd4nzva"
    references = tuple(f"long.message.id.{n}.0123456789@mail.example.test" for n in range(4))
    raw = compose(
        outbound(
            list_unsubscribe_url=f"https://desk.acme.test/unsubscribe/{key}",
            list_unsubscribe_mailto=f"support+unsub-{key}@acme.test",
            references=references,
        ),
        now=NOW,
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert f"\r\nList-Unsubscribe: <https://desk.acme.test/unsubscribe/{key}>,\r\n".encode() in head
    assert b"\r\nReferences: <long.message.id.0.0123456789@mail.example.test>\r\n " in head
    assert not any(line.endswith(b" ") for line in head.split(b"\r\n"))
    assert max(len(line) for line in head.split(b"\r\n")) <= 100
    legacy = message_from_bytes(raw)  # compat32: folds are kept, so the value's first character shows
    assert str(legacy["List-Unsubscribe"]).startswith("<https://")
    message = parse(raw)
    assert message["List-Unsubscribe"] == (
        f"<https://desk.acme.test/unsubscribe/{key}>, <mailto:support+unsub-{key}@acme.test>"
    )
    assert message["References"] == " ".join(f"<{reference}>" for reference in references)


def test_list_unsubscribe_mailto_only():
    message = parse(compose(outbound(list_unsubscribe_mailto="mailto:support+unsub-k3y@acme.test"), now=NOW))
    assert message["List-Unsubscribe"] == "<mailto:support+unsub-k3y@acme.test>"
    assert "List-Unsubscribe-Post" not in message


def test_one_click_is_only_offered_for_https():
    message = parse(compose(outbound(list_unsubscribe_url="http://localhost:3000/unsubscribe/k3y"), now=NOW))
    assert message["List-Unsubscribe"] == "<http://localhost:3000/unsubscribe/k3y>"
    assert "List-Unsubscribe-Post" not in message


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "https://x.test/a b", "https://x.test/>, <https://y"])
def test_invalid_unsubscribe_url_is_refused(bad: str):
    with pytest.raises(ValueError, match="List-Unsubscribe"):
        compose(outbound(list_unsubscribe_url=bad), now=NOW)


# --- user input in headers -----------------------------------------------------------------------------


def test_header_injection_in_subject_and_names_is_neutralised():
    raw = compose(
        outbound(
            subject=EVIL,
            sender_name=EVIL,
            to=f"{EVIL} <bob@customer.test>",
            cc=(f"{EVIL} <carol@customer.test>", EVIL),
            extra_headers=(("X-Ticket-Subject", EVIL),),
        ),
        now=NOW,
    )
    message = parse(raw)
    assert "Bcc" not in message
    assert not re.search(rb"^Bcc:", raw, re.MULTILINE | re.IGNORECASE)
    assert message["Subject"] == "Evil Bcc: x@y"
    assert message["X-Ticket-Subject"] == "Evil Bcc: x@y"
    (sender,) = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Evil Bcc: x@y", "support@acme.test")
    (recipient,) = message["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == ("Evil Bcc: x@y", "bob@customer.test")
    # The malformed Cc entry without an address is left out; the other keeps its own address.
    assert [a.addr_spec for a in message["Cc"].addresses] == ["carol@customer.test"]


def test_names_with_address_syntax_stay_one_address():
    evil_name = 'Eve", attacker@evil.test <x@y>'
    raw = compose(outbound(sender_name=evil_name, to='"Doe, John" <j@d.test>'), now=NOW)
    message = parse(raw)
    (sender,) = message["From"].addresses
    assert sender.addr_spec == "support@acme.test"
    assert sender.display_name == 'Eve", attacker@evil.test <x@y>'
    (recipient,) = message["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == ("Doe, John", "j@d.test")


def test_non_ascii_names_and_subject_are_rfc2047_encoded():
    raw = compose(
        outbound(
            sender_name="Zoë at Ünïcorn",
            to="Jürgen Müller <jm@customer.test>",
            cc=("Ösa <o@c.test>",),
            subject="Drucker brennt – bitte helfen [#42]",
        ),
        now=NOW,
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")
    assert b"=?utf-8?" in head
    message = parse(raw)
    assert message["Subject"] == "Drucker brennt – bitte helfen [#42]"
    assert decoded(message["From"]) == "Zoë at Ünïcorn <support@acme.test>"
    assert decoded(message["To"]) == "Jürgen Müller <jm@customer.test>"
    assert decoded(message["Cc"]) == "Ösa <o@c.test>"


def header_lines(raw: bytes, name: bytes) -> bytes:
    """One header as written, with its continuation lines."""
    head = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    match = re.search(rb"^" + name + rb": .*?\r\n(?! )", head, re.M | re.S)
    assert match is not None
    return match.group(0)


def parse_utf8_headers(raw: bytes) -> EmailMessage:
    # RFC 6532 headers are UTF-8; message_from_bytes would leave them as surrogate escapes.
    head, body = raw.split(b"\r\n\r\n", 1)
    message = message_from_string(
        head.decode("utf-8") + "\r\n\r\n" + body.decode("ascii"), policy=policy.default
    )
    assert isinstance(message, EmailMessage)
    return message


def test_ascii_addresses_keep_their_to_and_cc_headers():
    raw = compose(
        outbound(
            to="Jürgen Müller <jm@customer.test>",
            cc=("Ösa <o@c.test>", '"Doe, Jane" <jane@bücher.example>', "carol@customer.test"),
        ),
        now=NOW,
    )
    assert header_lines(raw, b"To") == b"To: =?utf-8?b?SsO8cmdlbiBNw7xsbGVy?= <jm@customer.test>\r\n"
    assert header_lines(raw, b"Cc") == (
        b'Cc: =?utf-8?q?=C3=96sa?= <o@c.test>, "Doe, Jane" <jane@xn--bcher-kva.example>,\r\n'
        b" carol@customer.test\r\n"
    )


def test_a_non_ascii_local_part_is_written_raw_and_only_the_name_is_encoded():
    # RFC 2047 §5 forbids encoded words in an address; the relay sends this mail with SMTPUTF8 (RFC 6531).
    long_name = "Ösa " + "Ö" * 40
    raw = compose(
        outbound(
            to="Jörg <jörg@example.de>",
            cc=("Dan <dan@other.test>", f"{long_name} <ösa@bücher.example>", "carol@customer.test"),
        ),
        now=NOW,
    )
    assert header_lines(raw, b"To") == "To: =?utf-8?b?SsO2cmc=?= <jörg@example.de>\r\n".encode()
    head, body = raw.split(b"\r\n\r\n", 1)
    body.decode("ascii")  # only the addresses are raw UTF-8
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    message = parse_utf8_headers(raw)
    (recipient,) = message["To"].addresses
    assert (recipient.display_name, recipient.username, recipient.domain) == ("Jörg", "jörg", "example.de")
    assert [a.addr_spec for a in message["Cc"].addresses] == [
        "dan@other.test",
        "ösa@xn--bcher-kva.example",
        "carol@customer.test",
    ]
    # the long name's encoded words, folded onto lines of their own, still decode to the name
    encoded_words = re.findall(r"=\?utf-8\?[bq]\?[^?]*\?=", header_lines(raw, b"Cc").decode())
    assert decoded(" ".join(encoded_words)) == long_name


def test_a_non_ascii_cc_in_a_mail_to_an_ascii_recipient_is_shown_downgraded():
    # This mail travels without SMTPUTF8, so it stays ASCII: the address becomes an empty group named
    # after it (RFC 6857's downgrade), readable and never a reply target.
    raw = compose(outbound(cc=("Jörg <jörg@example.de>", "carol@customer.test")), now=NOW)
    raw.decode("ascii")
    message = parse(raw)
    assert [(group.display_name, group.addresses) for group in message["Cc"].groups[:1]] == [
        ("Jörg <jörg@example.de>", ())
    ]
    assert [a.addr_spec for a in message["Cc"].addresses] == ["carol@customer.test"]


def test_long_names_and_subjects_fold_without_breaking():
    long_name = "Very Long Sender Name " * 8
    long_subject = "A long subject with many words " * 10
    raw = compose(outbound(sender_name=long_name, subject=long_subject), now=NOW)
    assert re.search(rb"(?<!\r)\n", raw) is None
    message = parse(raw)
    assert message["Subject"] == long_subject.strip()
    (sender,) = message["From"].addresses
    assert sender.display_name == long_name.strip()
    assert sender.addr_spec == "support@acme.test"
    # Nothing left of a subject once cleaned: an empty header, as before, not a failed mail.
    assert parse(compose(outbound(subject="\r\n"), now=NOW))["Subject"] == ""


def test_cc_repeating_the_recipient_is_dropped():
    message = parse(compose(outbound(cc=("bob@customer.test", "carol@customer.test")), now=NOW))
    assert [a.addr_spec for a in message["Cc"].addresses] == ["carol@customer.test"]


def test_no_cc_header_without_other_participants():
    assert "Cc" not in parse(compose(outbound(cc=()), now=NOW))


@pytest.mark.parametrize("field", ["to", "reply_to", "sender_address"])
def test_invalid_addresses_are_refused(field: str):
    with pytest.raises(ValueError, match="not an email address"):
        compose(outbound(**{field: "nobody"}), now=NOW)


def test_an_address_literal_domain_is_an_address():
    # RFC 5321 §4.1.3: the intake and the store take ops@[10.0.0.1], so compose must write it.
    message = parse(compose(outbound(to="Ops <ops@[10.0.0.1]>", cc=("dev@[IPv6:2001:db8::1]",)), now=NOW))
    assert [a.addr_spec for a in message["To"].addresses] == ["ops@[10.0.0.1]"]
    assert [a.addr_spec for a in message["Cc"].addresses] == ["dev@[IPv6:2001:db8::1]"]


@pytest.mark.parametrize("bad", ["o[ps@customer.test", "ops@[10.0.0.1", "ops@[10.0.0.1]x", "ops@[10 0.0.1]"])
def test_brackets_outside_an_address_literal_are_refused(bad: str):
    with pytest.raises(ValueError, match="not an email address"):
        compose(outbound(to=bad), now=NOW)


def test_extra_headers():
    message = parse(compose(outbound(extra_headers=(("X-Servicedesk-Ticket", "42"),)), now=NOW))
    assert message["X-Servicedesk-Ticket"] == "42"


@pytest.mark.parametrize("name", ["From", "bcc", "Message-ID", "X Space", "X:Colon", ""])
def test_extra_headers_cannot_replace_ours_or_be_malformed(name: str):
    with pytest.raises(ValueError, match="extra header"):
        compose(outbound(extra_headers=((name, "x"),)), now=NOW)


# --- attachments --------------------------------------------------------------------------------------


def test_attachments_make_multipart_mixed():
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    raw = compose(
        outbound(
            attachments=(
                OutboundAttachment("report.pdf", "application/pdf", pdf),
                OutboundAttachment("Größe ✓.txt", "text/plain; charset=utf-8", "ü\n".encode()),
            )
        ),
        now=NOW,
    )
    message = parse(raw)
    assert message.get_content_type() == "multipart/mixed"
    alternative, first, second = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert first.get_content_type() == "application/pdf"
    assert first.get_content_disposition() == "attachment"
    assert first.get_filename() == "report.pdf"
    assert first.get_content() == pdf
    assert second.get_content_type() == "text/plain"
    assert second.get_filename() == "Größe ✓.txt"
    assert second.get_payload(decode=True) == "ü\n".encode()
    raw.decode("ascii")


def test_two_files_of_one_name_are_both_attached():
    # Slack names every pasted screenshot "image.png": a reply with two must carry both.
    raw = compose(
        outbound(
            attachments=(
                OutboundAttachment("image.png", "image/png", b"first"),
                OutboundAttachment("image.png", "image/png", b"second"),
            )
        ),
        now=NOW,
    )
    files = [(part.get_filename(), part.get_content()) for part in parse(raw).iter_attachments()]
    assert files == [("image.png", b"first"), ("image-2.png", b"second")]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("image/PNG", "image/png"),
        ("", "application/octet-stream"),
        ("not a type", "application/octet-stream"),
        ("text/html\r\nX-Evil: 1", "application/octet-stream"),
        ("message/rfc822", "application/octet-stream"),
        ("multipart/mixed", "application/octet-stream"),
    ],
)
def test_attachment_content_types(given: str, expected: str):
    message = parse(compose(outbound(attachments=(OutboundAttachment("f", given, b"x"),)), now=NOW))
    assert list(message.iter_parts())[1].get_content_type() == expected
    assert "X-Evil" not in list(message.iter_parts())[1]


def test_hostile_attachment_name_is_sanitised():
    attachment = OutboundAttachment('..\\..\\etc/pass"wd\r\nX-Evil: 1.txt', "text/plain", b"x")
    part = list(parse(compose(outbound(attachments=(attachment,)), now=NOW)).iter_parts())[1]
    assert part.get_filename() == 'pass"wd X-Evil: 1.txt'
    assert "X-Evil" not in part


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("/tmp/../report.pdf", "report.pdf"),
        ("C:\\Users\\bob\\report.pdf", "report.pdf"),
        ("..", "attachment"),
        ("", "attachment"),
        (" .hidden ", "hidden"),
        ("a\x00b\tc.txt", "a b c.txt"),
    ],
)
def test_safe_filename(given: str, expected: str):
    assert safe_filename(given) == expected


def test_safe_filename_bounds_length_and_keeps_the_extension():
    name = safe_filename("x" * 500 + ".docx")
    assert len(name) <= 150 and name.endswith(".docx")


def test_attachments_within_the_limit_are_attached_in_order():
    files = [
        OutboundAttachment(f"{n}.bin", "application/octet-stream", b"x" * size)
        for n, size in enumerate([4, 5, 3, 2])
    ]
    attached, too_large = compose_attachments_within(files, limit_bytes=10)
    assert [a.filename for a in attached] == ["0.bin", "1.bin"]
    assert [a.filename for a in too_large] == ["2.bin", "3.bin"]


def test_one_large_file_does_not_stop_smaller_ones():
    files = [
        OutboundAttachment(name, "application/octet-stream", b"x" * size)
        for name, size in [("huge", 11), ("small", 3), ("exact", 7)]
    ]
    attached, too_large = compose_attachments_within(files, limit_bytes=10)
    assert [a.filename for a in attached] == ["small", "exact"]
    assert [a.filename for a in too_large] == ["huge"]


def test_default_attachment_limit_is_ten_megabytes():
    assert MAX_ATTACHED_BYTES == 10 * 1024 * 1024
    exactly = OutboundAttachment("a", "application/octet-stream", b"\0" * MAX_ATTACHED_BYTES)
    one_more = OutboundAttachment("b", "application/octet-stream", b"\0")
    assert compose_attachments_within([exactly, one_more]) == ((exactly,), (one_more,))
