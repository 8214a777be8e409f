"""A customer's mail after the first reply, at its edges: bounces, unsubscribing, through the real
interfaces (SMTP into the intake, signed Slack events via the emulator, HTTP, the mail sink)."""

from __future__ import annotations

import html
import re
import urllib.request
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import urljoin

import pytest
from sqlalchemy import select

from sandbox.mail_sink import ReceivedMail
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import ALICE, TRIAGE
from store.actions.messages import REACTION_PENDING
from store.models import InboundItem, InboundState, Participant
from tests.e2e.conftest import SUPPORT, RunningDesk, StartService, free_port
from tests.e2e.test_serve import serve_env, serve_once

pytestmark = pytest.mark.timeout(120)

BOB = "bob@customer.test"
CAROL = "carol@customer.test"


def customer_mail(body: str, *, cc: str | None = f"Carol <{CAROL}>") -> bytes:
    message = EmailMessage()
    message["From"] = f"Bob Customer <{BOB}>"
    message["To"] = SUPPORT
    if cc:
        message["Cc"] = cc
    message["Subject"] = "Printer on fire"
    message["Message-ID"] = make_msgid(domain="customer.test")
    message.set_content(body)
    return message.as_bytes(policy=SMTP)


def mails_to(service: RunningDesk, address: str) -> list[ReceivedMail]:
    return [mail for mail in service.sink.messages if address in mail.rcpt_tos]


def plain(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    return str(body.get_content()) if body is not None else ""


def participants(service: RunningDesk) -> dict[str, Participant]:
    with service.db.read() as session:
        return {p.email: p for p in session.scalars(select(Participant))}


def answered_ticket(service: RunningDesk) -> tuple[str, ReceivedMail]:
    """A ticket with Carol in Cc, and a staff answer mailed to her: (card ts, her copy)."""
    assert service.send_mail(customer_mail("The printer is on fire."))[0] == 250
    card = service.wait_for(service.card, "the card")
    service.wait_for_thread_text(card.ts, "The printer is on fire.")
    service.post_as(ALICE, "Unplug it first.", thread_ts=card.ts)
    [to_carol] = service.wait_for(lambda: mails_to(service, CAROL), "the answer to carol")
    return card.ts, to_carol


def dsn(original: ReceivedMail, recipient: str, *, action: str, status: str, diagnostic: str) -> bytes:
    """A Postfix-style delivery status notification (RFC 3464) for one of the desk's mails."""
    headers = original.raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    text = f"""From: Mail Delivery System <MAILER-DAEMON@relay.acme.test>
To: {original.mail_from}
Subject: Undelivered Mail Returned to Sender
Message-ID: {make_msgid(domain="relay.acme.test")}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered to {recipient}.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.acme.test

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic}

--BOUNDARY
Content-Type: text/rfc822-headers

{headers}

--BOUNDARY--
"""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def test_a_mail_given_up_after_days_of_temporary_errors_is_a_bounce(service: RunningDesk) -> None:
    """A relay that could not reach the recipient's server for its whole queue lifetime (Postfix:
    5 days) returns the mail with `Action: failed` and the last, temporary, status (4.4.1): the mail
    will never arrive. Staff must hear of it, and no more mail go to that dead address, as for a 5.x.x."""
    card_ts, to_carol = answered_ticket(service)
    expired = dsn(
        to_carol,
        CAROL,
        action="failed",
        status="4.4.1",
        diagnostic="X-Postfix; connect to mx.customer.test[192.0.2.7]:25: Connection timed out",
    )
    assert service.send_mail(expired, mail_from="", rcpt_tos=(to_carol.mail_from,))[0] == 250
    service.wait_for_thread_text(card_ts, f"Mail to {CAROL} bounced")
    assert participants(service)[CAROL].bounced_at is not None
    assert participants(service)[BOB].bounced_at is None
    assert len(service.cards()) == 1


def test_the_unsubscribe_button_posts_under_a_public_url_with_a_path(start_service: StartService) -> None:
    """Behind a reverse proxy that serves the desk under a path (`https://acme.test/desk` forwarded to
    the service's `/`), the page's button must post to that path too: an action of `/unsubscribe/…`
    leaves the desk's prefix and reaches whatever else the site serves there (a 404)."""
    public = "https://www.acme.test/desk"
    service = start_service(public_url=public)
    assert service.send_mail(customer_mail("The printer is on fire.", cc=None))[0] == 250
    [ack] = service.wait_for_mails(1)
    [link] = re.findall(r"<(https://[^>]+)>", str(ack.message["List-Unsubscribe"]))
    assert link.startswith(f"{public}/unsubscribe/")

    def through_proxy(url: str) -> str:
        """Where the proxy sends a request for `url` (the public path without its prefix)."""
        assert url.startswith(public + "/"), f"{url} is not under {public}"
        return service.http_url + url.removeprefix(public)

    with urllib.request.urlopen(through_proxy(link), timeout=10) as response:
        page = response.read().decode()
    [form] = re.findall(r"<form[^>]*>", page)
    action = re.search(r'action="([^"]*)"', form)
    # A browser posts a form to its action resolved against the page's own (public) address, or to
    # that address itself when there is no action.
    target = urljoin(link, html.unescape(action.group(1))) if action else link
    request = urllib.request.Request(through_proxy(target), data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    service.wait_for(lambda: participants(service)[BOB].unsubscribed_at, "bob unsubscribed")


ONE_LINE_HTML = (
    "<html><body><p>Hello $customer_name,</p>$reply"
    '<p><a href="$unsubscribe_url">Stop these emails</a></p></body></html>\n'
)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        # The reply left out: every staff answer would be mailed as a signature alone.
        ({"staff_reply.txt": "-- \n$sender_name\n", "staff_reply.html": "<p>$sender_name</p>\n"}, "$reply"),
        # A one-line (minified) HTML part: the line holding the reply also holds the optional values,
        # so for a recipient without a name, or without SERVICEDESK_PUBLIC_URL, the whole reply goes.
        ({"staff_reply.html": ONE_LINE_HTML}, "$reply"),
        # An empty part: a blank acknowledgement.
        ({"acknowledgement.txt": "\n"}, "blank"),
        ({"resolved.html": "<html><body>\n<p>$unsubscribe_url</p>\n</body></html>\n"}, "blank"),
    ],
)
def test_a_template_that_would_send_blank_or_lose_the_reply_stops_serve(
    tmp_path: Path, emulator: SlackEmulator, database_url: str, files: dict[str, str], problem: str
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(content)
    env = serve_env(tmp_path, emulator, database_url, free_port(), free_port())
    result = serve_once(tmp_path, {**env, "SERVICEDESK_TEMPLATES_DIR": str(folder)}, "--role", "worker")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "SERVICEDESK_TEMPLATES_DIR" in line]
    assert str(folder / next(iter(files))) in line and problem in line


@pytest.mark.parametrize(
    ("written", "linked"),
    [
        # A scheme in capitals (RFC 3986 3.1: schemes are case-insensitive) was taken at start, and
        # then every email failed for good: "the email could not be composed".
        ("HTTPS://Desk.ACME.test/Support", "https://desk.acme.test/Support"),
        # An internationalised host name: the same, until written as its ASCII (IDNA) form.
        ("https://bücher.example/desk", "https://xn--bcher-kva.example/desk"),
    ],
)
def test_a_public_url_written_otherwise_still_gives_mail_its_links(
    start_service: StartService, written: str, linked: str
) -> None:
    service = start_service(public_url=written)
    assert service.send_mail(customer_mail("The printer is on fire.", cc=None))[0] == 250
    [ack] = service.wait_for_mails(1)
    key = participants(service)[BOB].unsubscribe_key
    assert f"<{linked}/unsubscribe/{key}>" in str(ack.message["List-Unsubscribe"])
    assert ack.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = ack.message.get_body(("plain",))
    assert text is not None and f"{linked}/unsubscribe/{key}" in text.get_content()


def test_a_templates_folder_the_system_cannot_look_at_is_one_line(
    tmp_path: Path, emulator: SlackEmulator, database_url: str
) -> None:
    """A path the system refuses to look up (here a name longer than a file name may be, 255 bytes)
    raised the operating system's error out of serve, as a traceback."""
    folder = tmp_path / ("t" * 300)
    env = serve_env(tmp_path, emulator, database_url, free_port(), free_port())
    result = serve_once(tmp_path, {**env, "SERVICEDESK_TEMPLATES_DIR": str(folder)}, "--role", "worker")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "SERVICEDESK_TEMPLATES_DIR" in line]
    assert line.startswith("servicedesk: SERVICEDESK_TEMPLATES_DIR: ") and "File name too long" in line


def test_someone_removed_while_a_reply_waits_is_not_shown_in_its_cc(start_service: StartService) -> None:
    """Staff remove Carol while an answer waits out its undo window: she is not mailed it, and
    Bob's copy must not show her in Cc either, or his reply-all brings her the answer all the same."""
    service = start_service(reply_delay_seconds=3)
    assert service.send_mail(customer_mail("The printer is on fire."))[0] == 250
    card = service.wait_for(service.card, "the card")
    service.wait_for_thread_text(card.ts, "The printer is on fire.")
    answer_ts = service.post_as(ALICE, "Here is the fix.", thread_ts=card.ts)
    service.wait_for(
        lambda: REACTION_PENDING in service.emulator.message(TRIAGE, answer_ts).reactions, "the answer held"
    )
    service.post_as(ALICE, f"!cc remove {CAROL}", thread_ts=card.ts)
    service.wait_for_thread_text(card.ts, f"removed {CAROL}")
    [to_bob] = service.wait_for(
        lambda: [m for m in mails_to(service, BOB) if "Here is the fix" in plain(m)],
        "the answer to bob",
    )
    assert mails_to(service, CAROL) == []
    assert CAROL not in str(to_bob.message["Cc"] or "")


def plain_notice(original: ReceivedMail, subject: str, words: str) -> bytes:
    """An old-style plain-text notice from MAILER-DAEMON (no delivery-status part) about a mail of ours."""
    message = EmailMessage()
    message["From"] = "Mail Delivery System <Mailer-Daemon@relay.acme.test>"
    message["To"] = original.mail_from
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="relay.acme.test")
    message["Auto-Submitted"] = "auto-replied"
    message.set_content(words)
    return message.as_bytes(policy=SMTP)


EXIM_DELAY = f"""This message was created automatically by mail delivery software.
A message that you sent has not yet been delivered to one or more of its
recipients after more than 24 hours on the queue on relay.acme.test.

The message identifier is:     1tXyZa-000AbC-7q
The subject of the message is: Re: Printer on fire [#1]

The address to which the message has not yet been delivered is:

  {CAROL}
    Delay reason: SMTP error from remote mail server after RCPT TO:<{CAROL}>:
    host mx.customer.test [192.0.2.7]: 451 Temporary local problem - please try later

No action is required on your part. Delivery attempts will continue for
some time, and this warning may be repeated at intervals if the message
remains undelivered. Eventually the mail delivery software will give up,
and when that happens, the message will be returned to you.
"""

SENDMAIL_DELAY = f"""    **********************************************
    **      THIS IS A WARNING MESSAGE ONLY      **
    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **
    **********************************************

The original message was received at Mon, 7 Dec 2026 10:00:00 GMT
from desk.acme.test [192.0.2.1]

   ----- Transcript of session follows -----
<{CAROL}>... Deferred: Connection timed out with mx.customer.test.
Warning: message still undelivered after 4 hours
Will keep trying until message is 5 days old
"""

EXIM_FAILURE = f"""This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {CAROL}
    SMTP error from remote mail server after RCPT TO:<{CAROL}>:
    host mx.customer.test [192.0.2.7]: 550 no such mailbox
"""


def test_a_plain_text_delay_warning_does_not_mark_the_address_bounced(service: RunningDesk) -> None:
    """An old Exim (or Sendmail) "message delayed" warning from MAILER-DAEMON, plain text with no
    delivery-status part, was read as a bounce: the address was marked bounced and mailed no more,
    though the mail was still on its way. A delay is never a bounce; Exim's failure still is, also
    under a subject that says "delayed" only because the mail it returns did."""
    card_ts, to_carol = answered_ticket(service)
    bounce_to = (to_carol.mail_from,)
    warnings = [
        plain_notice(to_carol, "Warning: message 1tXyZa-000AbC-7q delayed 24 hours", EXIM_DELAY),
        plain_notice(to_carol, "Warning: could not send message for past 4 hours", SENDMAIL_DELAY),
    ]
    for warning in warnings:
        assert service.send_mail(warning, mail_from="", rcpt_tos=bounce_to)[0] == 250

    def all_taken() -> bool:
        with service.db.read() as session:
            waiting = session.scalars(
                select(InboundItem.id).where(
                    InboundItem.state.in_([InboundState.PENDING, InboundState.CLAIMED])
                )
            ).all()
        return not waiting

    service.wait_for(all_taken, "the warnings taken in")
    assert participants(service)[CAROL].bounced_at is None
    # A failure is one whatever its subject repeats of the mail's (a ticket about a delayed order).
    failure = plain_notice(to_carol, "Undeliverable: Re: Order delayed (delay) [#1]", EXIM_FAILURE)
    assert service.send_mail(failure, mail_from="", rcpt_tos=bounce_to)[0] == 250
    thread = service.wait_for_thread_text(card_ts, f"Mail to {CAROL} bounced")
    assert thread.count("bounced") == 1, thread
    assert "550 no such mailbox" in thread
    assert participants(service)[CAROL].bounced_at is not None
