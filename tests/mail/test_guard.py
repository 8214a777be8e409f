"""Loop and bounce guard: one test per rule, bounce details, and our own addresses."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path

import pytest

from mail.guard import RULES, classify, is_own_address
from mail.parse import parse_email

FIXTURES = Path(__file__).parent / "fixtures"


def parsed(headers: str, body: str = "hello\r\n") -> Message:
    raw = headers.strip("\n").replace("\n", "\r\n") + "\r\n\r\n" + body
    return message_from_bytes(raw.encode(), policy=policy.default)


PERSON = "From: Pat <pat@client.example>\nTo: support@desk.example\nSubject: help"


@pytest.mark.parametrize(
    ("extra", "kind", "rule"),
    [
        ("Auto-Submitted: auto-replied", "auto", "auto-submitted"),
        ("Auto-Submitted: auto-generated; owner-email=x@y", "auto", "auto-submitted"),
        ("X-Autoreply: yes", "auto", "autoreply-header"),
        ("X-Autorespond: Out of office", "auto", "autoreply-header"),
        ("Precedence: bulk", "auto", "precedence"),
        ("Precedence: JUNK", "auto", "precedence"),
        ("Precedence: list", "auto", "precedence"),
        ("List-Id: Team <team.lists.example>\nPrecedence: list", "list", "list-id-bulk"),
        ("List-Unsubscribe: <https://x.example/u>\nPrecedence: bulk", "list", "list-unsubscribe-bulk"),
        ("Return-Path: <>", "auto", "null-sender"),
        ("Content-Type: multipart/report; report-type=disposition-notification", "auto", "other-report"),
    ],
)
def test_each_rule_stops_automated_mail(extra: str, kind: str, rule: str) -> None:
    verdict = classify(parsed(f"{PERSON}\n{extra}"))
    assert (verdict.kind, verdict.rule) == (kind, rule)
    assert verdict.reason
    assert verdict.suppress_auto_reply


@pytest.mark.parametrize(
    "extra",
    [
        "",
        "Auto-Submitted: no",
        "X-Autoreply: no",
        "List-Id: Team <team.lists.example>",  # a person writing through a list without bulk precedence
        "List-Unsubscribe: <https://x.example/u>",
        "Precedence: first-class",
    ],
)
def test_a_person_writing_is_a_request(extra: str) -> None:
    verdict = classify(parsed(f"{PERSON}\n{extra}"))
    assert (verdict.kind, verdict.rule, verdict.bounce) == ("request", "", None)


def test_envelope_null_sender_and_daemon_senders() -> None:
    assert classify(parsed(PERSON), envelope_from="").rule == "null-sender"
    assert classify(parsed(PERSON), envelope_from="<>").rule == "null-sender"
    assert classify(parsed(PERSON), envelope_from="pat@client.example").kind == "request"
    assert classify(parsed(PERSON), envelope_from="not an address").kind == "request"
    daemon = parsed("From: MAILER-DAEMON@mx.example\nSubject: failure")
    assert (classify(daemon).kind, classify(daemon).rule) == ("bounce", "mailer-daemon")
    postmaster = classify(parsed(PERSON), envelope_from="Postmaster@mx.example")
    assert (postmaster.kind, postmaster.rule) == ("bounce", "mailer-daemon")


def test_auto_response_suppress_keeps_the_request_but_asks_for_no_acknowledgement() -> None:
    verdict = classify(parsed(f"{PERSON}\nX-Auto-Response-Suppress: OOF, AutoReply"))
    assert verdict.kind == "request" and verdict.suppress_auto_reply
    assert not classify(parsed(f"{PERSON}\nX-Auto-Response-Suppress: DR")).suppress_auto_reply


def test_delivery_report_names_our_message_and_the_failed_recipient() -> None:
    email = parse_email((FIXTURES / "bounce_dsn.eml").read_bytes())
    assert (email.classification, email.guard_rule) == ("bounce", "delivery-report")
    assert email.bounce is not None
    assert email.bounce.original_message_ids == ("outbox-77@desk.example",)
    assert email.bounce.failed_recipients == ("gone.user@client.example",)
    assert (email.bounce.action, email.bounce.status) == ("failed", "5.1.1")
    assert email.bounce.diagnostic is not None and "User unknown" in email.bounce.diagnostic


def test_delayed_recipients_are_not_failed_ones() -> None:
    report = (
        "--r\r\nContent-Type: text/plain\r\n\r\nstill trying\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: rfc822; slow@client.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
        "--r\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <ours-1@desk.example>\r\n--r--\r\n"
    )
    headers = (
        "From: postmaster@mx.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=r"
    )
    verdict = classify(parsed(headers, report))
    assert verdict.kind == "bounce" and verdict.bounce is not None
    assert verdict.bounce.failed_recipients == ()
    assert (verdict.bounce.action, verdict.bounce.status) == ("delayed", "4.4.1")
    assert verdict.bounce.original_message_ids == ("ours-1@desk.example",)


def test_plain_text_bounce_finds_the_returned_message_id() -> None:
    body = "Hi. This is the qmail-send program.\r\n--- Below this line is a copy of the message.\r\n\r\n"
    body += "From: support@desk.example\r\nMessage-ID: <ours-2@desk.example>\r\n\r\nHello\r\n"
    verdict = classify(parsed("From: MAILER-DAEMON@old.example\nSubject: failure notice", body))
    assert verdict.bounce is not None and verdict.bounce.original_message_ids == ("ours-2@desk.example",)


@pytest.mark.parametrize(
    ("own_words", "reason"),
    [
        (  # qmail
            "Hi. This is the qmail-send program.\r\n<bob@customer.example>:\r\n"
            "Remote host said: 550 5.1.1 <bob@customer.example>: User unknown\r\n",
            "smtp; 550 5.1.1 <bob@customer.example>: User unknown",
        ),
        (  # Exim without a delivery-status part
            "The following address(es) failed:\r\n  bob@customer.example\r\n"
            "    SMTP error from remote mail server after RCPT TO:<bob@customer.example>:\r\n"
            "    550 no such mailbox\r\n",
            "smtp; 550 no such mailbox",
        ),
        ("Your message of 500 bytes could not be delivered.\r\n", None),  # no server reply quoted
    ],
)
def test_plain_text_bounce_gives_the_servers_reply_as_its_reason(own_words: str, reason: str | None) -> None:
    # The copy of the message after the notice's own words is not read for a reason.
    body = own_words + "--- Below this line is a copy of the message.\r\n\r\n"
    body += "Message-ID: <ours-3@desk.example>\r\n\r\n550 5.7.1 words of the returned message\r\n"
    verdict = classify(parsed("From: MAILER-DAEMON@old.example\nSubject: failure notice", body))
    assert verdict.bounce is not None and verdict.bounce.diagnostic == reason


def test_rules_are_one_small_named_check_each() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    assert names[0] == "delivery-report"  # a report is a bounce before anything else it also is


@pytest.mark.parametrize(
    ("address", "ours"),
    [
        ("support@desk.example", True),
        ("Support@DESK.example", True),
        ("support+abcdefghijklmnopqrstuvwxyz0123@desk.example", True),
        ("SUPPORT+Bounce-k3y@Desk.Example", True),
        ("support@other.example", False),
        ("supportx@desk.example", False),
        ("sales+support@desk.example", False),
        ("not an address", False),
        ("", False),
    ],
)
def test_is_own_address(address: str, ours: bool) -> None:
    assert is_own_address(address, "support@desk.example") is ours
