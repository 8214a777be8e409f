"""Reply trimming that drops the customer's own words from the triage thread, through SMTP
into the running service.

DESIGN "Email in" 6 trims quoted history and signatures for the Slack view; docs/email-intake.md puts
the rule above all: "never lose the customer's words. When unsure, text stays", and for interleaved
replies "only the attribution line goes; the quotes stay, so the answers keep their questions".
The full original is only reachable through a link that needs SERVICEDESK_PUBLIC_URL, so what the
trimmer drops is, for the team, gone.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

from tests.e2e.conftest import SUPPORT, RunningDesk


def send_text(service: RunningDesk, body: str, message_id: str) -> str:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Bob <bob@customer.test>", SUPPORT, "Help"
    message["Message-ID"] = message_id
    message.set_content(body)
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the card")
    return service.wait_for(lambda: service.thread_text(card.ts), "the thread post")


def test_an_interleaved_reply_keeps_its_first_question_too(service: RunningDesk) -> None:
    body = (
        "On Mon, Jun 3, 2024 at 10:00 AM Support <support@acme.test> wrote:\n"
        "> Which version do you run?\n"
        "3.2\n"
        "> Which operating system?\n"
        "Windows 11\n"
    )
    text = send_text(service, body, "<interleaved@customer.test>")
    assert "Windows 11" in text and "Which operating system?" in text
    # The first answer keeps its question, as the second does.
    assert "Which version do you run?" in text, text


def test_header_lines_quoted_inside_the_customers_own_text_do_not_cut_it(service: RunningDesk) -> None:
    body = (
        "I got a strange mail with these lines:\n"
        "From: billing@vendor.test\n"
        "To: me@customer.test\n"
        "and it asked for my password. Was that really you?\n"
    )
    text = send_text(service, body, "<phish-report@customer.test>")
    assert "Was that really you?" in text, text


def test_a_request_forwarded_inline_into_the_desk_shows_what_was_forwarded(service: RunningDesk) -> None:
    # Gmail's and Outlook's default forward is inline: the forwarded mail *is* the request. It is
    # not quoted history of a conversation with the desk, yet the thread showed only "FYI, urgent".
    body = (
        "FYI, this customer complaint is urgent.\n"
        "\n"
        "---------- Forwarded message ---------\n"
        "From: Carol <carol@shop.test>\n"
        "Date: Mon, 3 Jun 2024 at 10:00\n"
        "Subject: Order 1234\n"
        "To: <bob@customer.test>\n"
        "\n"
        "My order 1234 never arrived and nobody answers the phone.\n"
    )
    text = send_text(service, body, "<forwarded-inline@customer.test>")
    assert "FYI, this customer complaint is urgent." in text
    assert "My order 1234 never arrived" in text, text
