"""The email channel end to end through real sockets: smtplib -> intake -> store -> worker -> the Slack
emulator's triage thread, and staff replies from that thread -> the relay (a mail sink) -> the customer,
whose answers land back in the same thread."""

from __future__ import annotations

import base64
import re
import urllib.request
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from typing import Any

from sqlalchemy import select

from bot.text.to_slack import escape_mrkdwn
from sandbox.mail_sink import ReceivedMail
from sandbox.workspace import ALICE
from store.actions.messages import REACTION_PENDING
from store.models import Customer, Outbox, Participant, Ticket
from tests.e2e.conftest import SUPPORT, TRIAGE, RunningDesk, StartService, message_text

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def customer_mail(
    body: str,
    *,
    subject: str = "Printer on fire",
    to: str = SUPPORT,
    in_reply_to: str | None = None,
    attachment: tuple[str, bytes, str] | None = None,
    message_id: str | None = None,
) -> tuple[bytes, str]:
    message = EmailMessage()
    message["From"] = "Bob Customer <bob@customer.test>"
    message["To"] = to
    message["Cc"] = "Carol <carol@customer.test>"
    message["Subject"] = subject
    message["Message-ID"] = message_id or make_msgid(domain="customer.test")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(body)
    if attachment:
        name, data, content_type = attachment
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    # CRLF line ends, as mail travels over SMTP (RFC 5321 2.3.8).
    return message.as_bytes(policy=SMTP), str(message["Message-ID"]).strip("<>")


def mails_to(service: RunningDesk, address: str) -> list[ReceivedMail]:
    return [mail for mail in service.sink.messages if address in mail.rcpt_tos]


def notices(service: RunningDesk, address: str) -> list[ReceivedMail]:
    """Status notices: mail the desk generated on its own (RFC 3834 auto-generated)."""
    return [m for m in mails_to(service, address) if m.message["Auto-Submitted"] == "auto-generated"]


def ticket_row(service: RunningDesk) -> Ticket:
    with service.db.transaction() as session:
        return session.query(Ticket).one()


def test_email_ticket_round_trip(service: RunningDesk) -> None:
    # 1. A customer writes, with an attachment: the card, the thread, the file, the acknowledgement.
    raw, first_id = customer_mail(
        "The printer is on fire.\n\nPlease help!", attachment=("photo.png", PNG, "image/png")
    )
    assert service.send_mail(raw)[0] == 250
    card = service.wait_for(service.card, "the ticket's card")
    assert "Printer on fire" in message_text(card)
    service.wait_for_thread_text(card.ts, "The printer is on fire.")
    uploaded = service.wait_for(
        lambda: [f for f in service.emulator.files.values() if f.name == "photo.png" and f.completed],
        "the upload",
    )
    assert uploaded[0].content == PNG
    assert any(uploaded[0].id in message.files for message in service.thread(card.ts))
    [ack] = service.wait_for_mails(1)
    key = ticket_row(service).reply_key
    assert ack.rcpt_tos == ["bob@customer.test"]  # the Cc'd colleague saw the mail itself
    assert ack.message["Auto-Submitted"] == "auto-replied"
    assert ack.message["Reply-To"] == f"support+{key}@acme.test"
    assert ack.message["In-Reply-To"] == f"<{first_id}>"
    assert "[#1]" in ack.message["Subject"]

    # 2. A staff member answers in the thread: after the undo window it goes out by email to the
    # requester and the Cc'd participant, formatted, threaded, with the file attached.
    steps = ("steps.txt", b"1. unplug\n")
    service.post_as(ALICE, "Turn it *off* first:\n• unplug it\n• call us", thread_ts=card.ts, files=[steps])
    service.wait_for(lambda: mails_to(service, "carol@customer.test"), "the reply to the Cc'd participant")
    replies = service.wait_for(lambda: mails_to(service, "bob@customer.test")[1:], "the requester's reply")
    reply = replies[0].message
    assert reply["From"] == "ACME Support <support@acme.test>"
    assert reply["To"] == "Bob Customer <bob@customer.test>"
    assert reply["Cc"] == "carol@customer.test"
    assert reply["Reply-To"] == f"support+{key}@acme.test"
    assert reply["In-Reply-To"] == f"<{first_id}>"
    assert f"<{first_id}>" in reply["References"]
    assert re.fullmatch(r"<t1\.[0-9a-f]+@acme\.test>", reply["Message-ID"])
    assert reply["Auto-Submitted"] is None
    assert reply.get_content_type() == "multipart/mixed"
    [alternative] = [p for p in reply.iter_parts() if p.get_content_type() == "multipart/alternative"]
    assert [part.get_content_type() for part in alternative.iter_parts()] == ["text/plain", "text/html"]
    html = reply.get_body(("html",))
    assert html is not None and "<strong>off</strong>" in html.get_content() and "<li>" in html.get_content()
    text = reply.get_body(("plain",))
    assert text is not None and "unplug it" in text.get_content()
    [attached] = list(reply.iter_attachments())
    assert (attached.get_filename(), attached.get_content()) == ("steps.txt", "1. unplug\n")

    # 3. The customer answers the reply: same thread, no new card.
    answer, _ = customer_mail(
        "Unplugged, it stopped.",
        subject="Re: Printer on fire [#1]",
        to=str(reply["Reply-To"]),
        in_reply_to=reply["Message-ID"],
    )
    assert service.send_mail(answer, rcpt_tos=(str(reply["Reply-To"]),))[0] == 250
    service.wait_for_thread_text(card.ts, "Unplugged, it stopped.")
    assert len(service.cards()) == 1


def test_an_empty_attachment_is_named_in_the_thread_and_the_others_still_arrive(service: RunningDesk) -> None:
    # Slack refuses an upload URL for 0 bytes; asking for one would fail the whole copy.
    raw, _ = customer_mail("Log and screenshot attached.", attachment=("empty.log", b"", "text/plain"))
    message = message_from_bytes(raw, policy=SMTP)
    message.add_attachment(PNG, maintype="image", subtype="png", filename="shot.png")
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the ticket's card")
    text = service.wait_for_thread_text(card.ts, "not uploaded")
    assert "Log and screenshot attached." in text and "empty.log" in text
    service.wait_for(
        lambda: [f for f in service.emulator.files.values() if f.name == "shot.png" and f.completed],
        "the screenshot's upload",
    )
    assert [f.name for f in service.emulator.files.values()] == ["shot.png"]


def test_a_screenshot_pasted_into_the_html_reaches_the_thread(service: RunningDesk) -> None:
    """Embedded as a data: URL, not a part of its own: it is uploaded like any inline image."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "Bob <bob@customer.test>", SUPPORT, "Error dialog"
    message["Message-ID"] = make_msgid(domain="customer.test")
    pasted = base64.b64encode(PNG).decode()
    message.set_content(
        f'<p>Screenshot of the error:</p><p><img src="data:image/png;base64,{pasted}" alt="error"></p>',
        subtype="html",
    )
    assert service.send_mail(message.as_bytes(policy=SMTP))[0] == 250
    card = service.wait_for(service.card, "the ticket's card")
    assert "[image: image-1.png]" in service.wait_for_thread_text(card.ts, "Screenshot of the error")
    uploaded = service.wait_for(
        lambda: [f for f in service.emulator.files.values() if f.name == "image-1.png" and f.completed],
        "the screenshot's upload",
    )
    assert [f.content for f in uploaded] == [PNG]


def test_a_reply_to_a_resolved_ticket_reopens_it_and_the_thread_says_so(service: RunningDesk) -> None:
    raw, _ = customer_mail("Broken again")
    service.send_mail(raw)
    card = service.wait_for(service.card, "the card")
    service.post_as(ALICE, "!status resolved", thread_ts=card.ts)
    resolved = service.wait_for(lambda: notices(service, "bob@customer.test"), "the resolved notice")
    assert "resolved" in resolved[0].message.get_body(("plain",)).get_content().lower()  # type: ignore[union-attr]
    assert ticket_row(service).status == "resolved"

    answer, _ = customer_mail("Sorry, still broken", in_reply_to=resolved[0].message["Message-ID"])
    service.send_mail(answer)

    service.wait_for_thread_text(card.ts, "Sorry, still broken")
    service.wait_for_thread_text(card.ts, "reopened")
    assert ticket_row(service).status == "open"
    assert len(service.cards()) == 1


def test_someone_staff_removed_is_not_added_back_by_writing_in(service: RunningDesk) -> None:
    raw, _ = customer_mail("The printer is on fire.")  # Carol is in Cc
    service.send_mail(raw)
    card = service.wait_for(service.card, "the card")
    service.post_as(ALICE, "!cc remove carol@customer.test", thread_ts=card.ts)
    service.wait_for_thread_text(card.ts, "removed carol@customer.test")

    # Carol still has the reply address, from the thread's mails.
    reply_to = f"support+{ticket_row(service).reply_key}@acme.test"
    carol = EmailMessage()
    carol["From"], carol["To"], carol["Cc"] = "Carol <carol@customer.test>", reply_to, "bob@customer.test"
    carol["Subject"], carol["Message-ID"] = "Re: Printer on fire [#1]", make_msgid(domain="customer.test")
    carol.set_content("Please keep me posted.")
    assert (
        service.send_mail(carol.as_bytes(policy=SMTP), mail_from="carol@customer.test", rcpt_tos=(reply_to,))[
            0
        ]
        == 250
    )
    service.wait_for_thread_text(card.ts, "Please keep me posted.")  # her words reach the ticket
    service.wait_for_thread_text(card.ts, "is not added back by mail")

    service.post_as(ALICE, "Replacing the fuser today", thread_ts=card.ts)
    service.wait_for(lambda: mails_to(service, "bob@customer.test")[1:], "the reply to the requester")
    with service.db.read() as session:
        recipients = [
            row.payload.get("to")
            for row in session.scalars(select(Outbox).where(Outbox.kind == "email.send"))
        ]
    assert "carol@customer.test" not in recipients and mails_to(service, "carol@customer.test") == []


def test_a_requester_who_unsubscribed_and_writes_again_gets_the_answer(service: RunningDesk) -> None:
    raw, _ = customer_mail("The printer is on fire.")
    service.send_mail(raw)
    card = service.wait_for(service.card, "the card")
    [ack] = service.wait_for_mails(1)
    match = re.search(r"<mailto:([^>]+)>", str(ack.message["List-Unsubscribe"]))
    assert match is not None
    unsubscribe, _ = customer_mail("unsubscribe", to=match.group(1))
    assert service.send_mail(unsubscribe, rcpt_tos=(match.group(1),))[0] == 250
    service.wait_for_thread_text(card.ts, "unsubscribed from this ticket")

    # Bob changes his mind: a new question, as a reply to the acknowledgement, wants its answer.
    reply_to = str(ack.message["Reply-To"])
    question, _ = customer_mail(
        "Does it need new toner too?",
        subject="Re: Printer on fire [#1]",
        to=reply_to,
        in_reply_to=ack.message["Message-ID"],
    )
    assert service.send_mail(question, rcpt_tos=(reply_to,))[0] == 250
    service.wait_for_thread_text(card.ts, "bob@customer.test wrote in again after unsubscribing")

    service.post_as(ALICE, "Yes, new toner too.", thread_ts=card.ts)
    [answer] = service.wait_for(lambda: mails_to(service, "bob@customer.test")[1:], "the answer to Bob")
    text = answer.message.get_body(("plain",))
    assert text is not None and "new toner too" in text.get_content()


def test_the_thread_links_the_original_message_when_a_public_url_is_set(service: RunningDesk) -> None:
    raw, _ = customer_mail("Keep the original")
    service.send_mail(raw)
    card = service.wait_for(service.card, "the card")
    text = service.wait_for_thread_text(card.ts, "/raw/")
    [link] = re.findall(r"(http://127\.0\.0\.1:\d+/raw/\d+/[a-z0-9]+)", text)
    with urllib.request.urlopen(link, timeout=10) as response:
        original = response.read()
    assert original == raw


def test_slack_calls_reuse_kept_alive_connections(service: RunningDesk) -> None:
    """Every Web API call of the process goes through one pool: the cards and thread posts of four
    tickets do not each open (on Slack: handshake) a connection of their own."""
    for number in range(4):
        raw, _ = customer_mail(f"Request {number}", subject=f"Printer {number}")
        assert service.send_mail(raw)[0] == 250
    posts = service.wait_for(
        lambda: found if len(found := service.emulator.calls_to("chat.postMessage")) >= 8 else None,
        "four cards and their thread posts",
    )
    peers = [call.peer for call in posts]
    assert None not in peers
    assert len(set(peers)) < len(peers)


def test_a_close_typed_right_after_the_answer_does_not_overtake_it(start_service: StartService) -> None:
    # An undo window long enough that the notice, were it not held, would surely go first.
    service = start_service(reply_delay_seconds=3)
    raw, _ = customer_mail("Printer on fire")
    service.send_mail(raw)
    card = service.wait_for(service.card, "the card")
    answer_ts = service.post_as(ALICE, "Fixed it: the printer works again.", thread_ts=card.ts)
    # Slack delivers events concurrently, so two posts a moment apart may reach the desk in either
    # order (docs/email-outbound.md); the "!close" is typed once the desk holds the answer, which
    # then still waits out its three seconds while the notice is ready at once.
    service.wait_for(
        lambda: REACTION_PENDING in service.emulator.message(TRIAGE, answer_ts).reactions, "the answer held"
    )
    service.post_as(ALICE, "!close", thread_ts=card.ts)
    service.wait_for(lambda: len(mails_to(service, "bob@customer.test")) >= 3, "the answer and the notice")
    kinds = [mail.message["Auto-Submitted"] or "reply" for mail in mails_to(service, "bob@customer.test")]
    assert kinds == ["auto-replied", "reply", "auto-generated"]  # acknowledgement, answer, then "closed"


def test_a_plain_text_mail_shows_in_slack_as_typed(start_service: StartService) -> None:
    """Plain text is not Markdown: `__init__.py`, `2*3*4` and a `---` line stay as typed, and the
    answers typed between quoted questions are not drawn into the quote."""
    service = start_service()
    typed = "> Which version?\n3.2\n> Which OS?\nWindows 11\nCrash in __init__.py at 2*3*4\n---\nTotal"
    raw, _ = customer_mail(typed)
    service.send_mail(raw)
    card = service.wait_for(service.card, "the card")
    shown = service.wait_for_thread_text(card.ts, "Total")
    assert escape_mrkdwn(typed) in shown


def test_a_customer_who_gave_no_name_is_not_greeted_by_their_address(service: RunningDesk) -> None:
    """A mail from a bare address (no display name) made the desk keep the address's local part as
    the customer's name, for the Slack side; mail then addressed them by it: "To: info <info@…>" and
    "Hello info,". Outlook names an address not in its contacts by the address itself, and the
    colleague in Cc was greeted "Hello 'carol@customer.test',". A name the customer never gave is not
    used: no greeting line, the bare address."""
    raw = (
        b"From: info@customer.test\r\nTo: support@acme.test\r\nSubject: Invoice copy\r\n"
        b"Cc: \"'carol@customer.test'\" <carol@customer.test>\r\n"
        b"Message-ID: <noname@customer.test>\r\n\r\nPlease send the invoice again.\r\n"
    )
    assert service.send_mail(raw, mail_from="info@customer.test")[0] == 250
    [ack] = service.wait_for_mails(1)
    assert ack.message["To"] == "info@customer.test"
    assert "Thank you for writing to us" in plain_text(ack)
    service.emulator.user_command(ALICE, TRIAGE, "/desk", "close 1").wait(10)
    closed = service.wait_for(lambda: notices(service, "carol@customer.test"), "the notice to the Cc")
    closed += service.wait_for(lambda: notices(service, "info@customer.test"), "the notice to the requester")
    assert [mail.message["To"] for mail in closed] == ["carol@customer.test", "info@customer.test"]
    for mail in [ack, *closed]:
        html = mail.message.get_body(("html",))
        assert html is not None and "Hello" not in html.get_content()
        assert "Hello" not in plain_text(mail)


def plain_text(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    return str(body.get_content()) if body is not None else ""


def test_a_numbered_list_continued_under_a_bullet_reaches_the_email_as_a_list(service: RunningDesk) -> None:
    """Slack sends a numbered list that resumes under a later bullet with an `offset` (items 3 and
    4 under the second bullet). It reached the customer's email as words run into the bullet's
    line ("Printer 3. Open the tray"), in the HTML and the text part alike. A mention styled as
    code inside a code span showed stray backticks, and bold "Note:" typed against the next word
    showed as `**Note:**unplug`."""
    raw, _ = customer_mail("Which steps?")
    assert service.send_mail(raw)[0] == 250
    card = service.wait_for(service.card, "the card")
    service.wait_for_thread_text(card.ts, "Which steps?")

    def items(style: str, indent: int, *words: str, offset: int = 0) -> dict[str, Any]:
        sections = [{"type": "rich_text_section", "elements": [{"type": "text", "text": w}]} for w in words]
        return {
            "type": "rich_text_list",
            "style": style,
            "indent": indent,
            "offset": offset,
            "elements": sections,
        }

    code = {"code": True}
    code_with_a_mention = [
        {"type": "text", "text": "Or ask ", "style": {}},
        {"type": "text", "text": "ping ", "style": code},
        {"type": "user", "user_id": ALICE, "style": code},
        {"type": "emoji", "name": "wave", "unicode": "1f44b", "style": code},
    ]
    bold_before_a_word = [
        {"type": "text", "text": "Note:", "style": {"bold": True}},
        {"type": "text", "text": "unplug it first."},
    ]
    blocks = [
        {
            "type": "rich_text",
            "elements": [
                items("bullet", 0, "Laptop"),
                items("ordered", 1, "Restart it", "Update it"),
                items("bullet", 0, "Printer"),
                items("ordered", 1, "Open the tray", "Clear the jam", offset=2),
                {"type": "rich_text_section", "elements": [*code_with_a_mention]},
                {"type": "rich_text_section", "elements": [*bold_before_a_word]},
            ],
        }
    ]
    service.emulator.user_post(ALICE, TRIAGE, "Laptop", thread_ts=card.ts, blocks=blocks)
    [reply] = service.wait_for(lambda: mails_to(service, "bob@customer.test")[1:], "the reply")
    html = reply.message.get_body(("html",))
    text = reply.message.get_body(("plain",))
    assert html is not None and text is not None
    content = re.sub(r"<p>|</p>|\s+", "", html.get_content())  # a loose list wraps items in <p>
    assert '<li>Printer<olstart="3"><li>Openthetray</li><li>Clearthejam</li></ol></li>' in content, content
    lines = [line.strip() for line in text.get_content().splitlines()]
    assert "3. Open the tray" in lines and "4. Clear the jam" in lines, lines
    # A mention or emoji styled as code is part of the code span around it, not a span of its own
    # (two spans side by side fuse into one that shows stray backticks).
    assert "Or ask `ping @alice👋`" in lines, "\n".join(lines)
    assert "ping@alice👋</code>" in content and "``" not in content, content
    # Bold ending in punctuation right before a word cannot close in Markdown, which showed its
    # asterisks: the punctuation goes outside the bold instead.
    assert "<strong>Note</strong>:unplugitfirst." in content and "**" not in content, content


def test_a_support_address_on_an_international_domain_is_ours_in_either_form(
    start_service: StartService,
) -> None:
    """An SMTPUTF8 client may write the domain in Unicode (bücher.example) rather than in the ASCII
    form the desk is configured with (xn--bcher-kva.example): the same mailbox (RFC 5890)."""
    service = start_service(support_address="help@xn--bcher-kva.example")
    first = (
        "From: Bob <bob@customer.test>\r\nTo: help@bücher.example\r\n"
        "Cc: Help <HELP@BÜCHER.example>, Carol <carol@customer.test>\r\nSubject: Printer on fire\r\n"
        "Message-ID: <idn-1@customer.test>\r\n\r\nThe printer is on fire.\r\n"
    ).encode()
    with service.smtp() as client:
        assert client.mail("bob@customer.test", ["SMTPUTF8"])[0] == 250
        assert client.rcpt("help@BÜCHER.example")[0] == 250
        assert client.data(first)[0] == 250
    card = service.wait_for(service.card, "the card")
    key = ticket_row(service).reply_key

    # A reply whose envelope names only the bare address: the key in To, in Unicode form, finds the ticket.
    reply = (
        f"From: Bob <bob@customer.test>\r\nTo: help+{key}@bücher.example\r\nSubject: Re: Printer on fire\r\n"
        "Message-ID: <idn-2@customer.test>\r\n\r\nStill burning.\r\n"
    ).encode()
    with service.smtp() as client:
        assert client.mail("bob@customer.test", ["SMTPUTF8"])[0] == 250
        assert client.rcpt(f"help+{key}@bücher.example")[0] == 250
        assert client.rcpt("help@xn--bcher-kva.example")[0] == 250
        assert client.data(reply)[0] == 250
    service.wait_for_thread_text(card.ts, "Still burning.")
    assert len(service.cards()) == 1
    with service.db.read() as session:
        people = set(session.scalars(select(Participant.email)))
    assert people == {"bob@customer.test", "carol@customer.test"}, "our own address became a participant"


def test_a_customer_on_an_international_domain_is_one_customer_in_either_form(service: RunningDesk) -> None:
    """bob@bücher.example and bob@xn--bcher-kva.example are one mailbox (RFC 5890): written one way
    and then the other (or as the Cc of another mail), they made two customers."""
    forms = ["Bob <bob@BÜCHER.example>", "Bob <bob@xn--bcher-kva.example>"]
    for number, sender in enumerate(forms, 1):
        raw = (
            f"From: {sender}\r\nTo: {SUPPORT}\r\nCc: Carol <carol@customer.test>, {forms[-number]}\r\n"
            f"Subject: Order {number}\r\nMessage-ID: <idn-customer-{number}@customer.test>\r\n\r\nWhere?\r\n"
        ).encode()
        with service.smtp() as client:
            assert client.mail("bob@xn--bcher-kva.example", ["SMTPUTF8"])[0] == 250
            assert client.rcpt(SUPPORT)[0] == 250
            assert client.data(raw)[0] == 250
    service.wait_for(lambda: len(service.cards()) == 2 or None, "both cards")
    with service.db.read() as session:
        customers = set(session.scalars(select(Customer.email)))
        people = sorted(session.scalars(select(Participant.email)))
    assert customers == {"bob@xn--bcher-kva.example"}
    assert people == ["bob@xn--bcher-kva.example"] * 2 + ["carol@customer.test"] * 2


def test_the_customer_is_whom_the_mail_asks_replies_to_go_to(service: RunningDesk) -> None:
    """A web form mails from its own no-reply address and names the person in Reply-To (RFC 5322
    3.6.2): the acknowledgement and the answers go to that person, who is the ticket's requester."""
    form = (
        "From: ACME Website <noreply@shop.test>\r\nReply-To: Jane Roe <Jane@Customer.test>\r\n"
        f"To: {SUPPORT}\r\nSubject: Contact form: order 1234\r\nMessage-ID: <form-1@shop.test>\r\n\r\n"
        "Where is my order?\r\n"
    ).encode()
    assert service.send_mail(form, mail_from="bounces@shop.test")[0] == 250
    card = service.wait_for(service.card, "the card")
    [ack] = service.wait_for(lambda: mails_to(service, "jane@customer.test"), "the acknowledgement to Jane")
    assert "#1" in str(ack.message["Subject"]) and mails_to(service, "noreply@shop.test") == []

    # Jane answers the acknowledgement from her own mailbox: the same ticket, and nobody new on it.
    answer, _ = customer_mail("It is order 1234.", in_reply_to=str(ack.message["Message-ID"]))
    answer = answer.replace(b"Bob Customer <bob@customer.test>", b"Jane Roe <jane@customer.test>")
    answer = answer.replace(b"Cc: Carol <carol@customer.test>\r\n", b"")
    assert service.send_mail(answer, mail_from="jane@customer.test")[0] == 250
    service.wait_for_thread_text(card.ts, "It is order 1234.")
    assert "Jane Roe" in service.thread_text(card.ts)
    with service.db.read() as session:
        assert set(session.scalars(select(Participant.email))) == {"jane@customer.test"}


def test_a_colleague_who_writes_in_is_answered_by_the_name_they_gave(service: RunningDesk) -> None:
    raw, _ = customer_mail("The printer is on fire.")
    service.send_mail(raw)
    card = service.wait_for(service.card, "the card")
    [ack] = service.wait_for(lambda: mails_to(service, "bob@customer.test"), "the acknowledgement")

    # Eve, Bob's colleague, answers from her own mailbox: she joins the ticket by writing in.
    eve = EmailMessage()
    eve["From"], eve["To"] = "Eve Example <eve@customer.test>", str(ack.message["Reply-To"])
    eve["Subject"], eve["Message-ID"] = "Re: Printer on fire [#1]", make_msgid(domain="customer.test")
    eve["In-Reply-To"] = str(ack.message["Message-ID"])
    eve.set_content("It is the one on the second floor.")
    service.send_mail(eve.as_bytes(policy=SMTP), mail_from="eve@customer.test")
    service.wait_for_thread_text(card.ts, "second floor")

    service.post_as(ALICE, "We are sending someone up.", thread_ts=card.ts)
    [answer] = service.wait_for(lambda: mails_to(service, "eve@customer.test"), "the answer to Eve")
    assert str(answer.message["To"]) == "Eve Example <eve@customer.test>"
