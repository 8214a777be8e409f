"""Hostile mail through SMTP into the running service: each gets a clear answer and changes nothing else."""

from __future__ import annotations

import base64
import email
import smtplib
from email.header import decode_header, make_header
from email.utils import parseaddr

import pytest
from sqlalchemy import func, select

from store.models import Customer, InboundItem, Message, Outbox, Participant, Ticket
from tests.e2e.conftest import SUPPORT, RunningDesk, StartService

UTF8_TEXT = "text/plain; charset=utf-8"


def head(**headers: str) -> bytes:
    lines = {"From": "Bob <bob@customer.test>", "To": SUPPORT, "Subject": "Help", **headers}
    return "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in lines.items()).encode()


def handled(service: RunningDesk) -> list[str]:
    def settled() -> list[str] | None:
        with service.db.transaction() as session:
            states = list(session.scalars(select(InboundItem.state)))
        return states if states and all(s in ("done", "failed") for s in states) else None

    return service.wait_for(settled, "the intake queue to drain")


def tickets(service: RunningDesk) -> list[Ticket]:
    with service.db.transaction() as session:
        return list(session.scalars(select(Ticket).order_by(Ticket.id)))


def test_cr_lf_in_names_and_subjects_injects_no_header(service: RunningDesk) -> None:
    evil = "=?utf-8?q?Evil=0D=0ABcc=3A_victim=40elsewhere=2Etest?="
    raw = head(From=f'"{evil}" <bob@customer.test>', Subject=f"Hi {evil}", Message_ID="<crlf@c.test>")
    raw += b"\r\nbody\r\n"
    assert service.send_mail(raw)[0] == 250

    [ack] = service.wait_for_mails(1)
    header_block = ack.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc") for line in header_block.split(b"\r\n"))
    assert ack.rcpt_tos == ["bob@customer.test"]
    assert "\n" not in str(ack.message["Subject"]) and "\r" not in str(ack.message["To"])
    [ticket] = tickets(service)
    assert "\n" not in ticket.subject and "\r" not in ticket.subject


def test_ten_thousand_cc_addresses_are_capped_and_nobody_is_mass_mailed(service: RunningDesk) -> None:
    cc = ", ".join(f"person{n}@crowd.test" for n in range(10_000))
    raw = head(Cc=cc, Message_ID="<crowd@c.test>") + b"\r\nHello all\r\n"
    assert service.send_mail(raw)[0] == 250
    card = service.wait_for(service.card, "the card")

    text = service.wait_for_thread_text(card.ts, "limit of 25 reached")
    assert "and 9955 more" in text
    with service.db.transaction() as session:
        participants = session.scalars(select(Participant.email).where(Participant.role == "cc")).all()
        mails = session.scalars(select(Outbox).where(Outbox.kind == "email.send")).all()
    assert len(participants) == 25
    assert [row.payload["to"] for row in mails] == ["bob@customer.test"]
    assert [mail.rcpt_tos for mail in service.wait_for_mails(1)] == [["bob@customer.test"]]


def test_a_30_mb_message_gets_552_at_the_default_limit(service: RunningDesk) -> None:
    big = head(Message_ID="<big@c.test>") + b"\r\n" + (b"A" * 76 + b"\r\n") * (30 * 1024 * 1024 // 78)
    assert service.settings.max_message_bytes == 26_214_400
    with service.smtp() as client:
        # A client announcing the size (RFC 1870) is refused before sending it ...
        code, _ = client.mail("bob@customer.test", [f"SIZE={len(big)}"])
        assert code == 552
    with service.smtp() as client:
        # ... one that does not is refused after.
        client.mail("bob@customer.test")
        client.rcpt(SUPPORT)
        code, text = client.data(big)
        assert (code, text.split()[0]) == (552, b"5.3.4")
    assert tickets(service) == []


def nested(depth: int) -> bytes:
    parts = b""
    for level in range(depth):
        parts += f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
    parts += b"Content-Type: text/plain\r\n\r\nDeep inside\r\n"
    for level in reversed(range(depth)):
        parts += f"--b{level}--\r\n".encode()
    return parts


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("200-level nested MIME", head(Message_ID="<deep@c.test>", MIME_Version="1.0") + nested(200)),
        (
            "HTML bomb",
            head(Message_ID="<bomb@c.test>", MIME_Version="1.0", Content_Type="text/html")
            + b"\r\n"
            + b"<div>" * 100_000
            + b"<p>boom</p>"
            + b"</div>" * 100_000
            + b"<style>"
            + b"x{}" * 100_000
            + b"</style>\r\n",
        ),
        (
            "invalid UTF-8",
            head(Message_ID="<utf@c.test>", Subject="=?utf-8?b?/w==?=", Content_Type=UTF8_TEXT)
            + b"X-Raw: \xff\r\n\r\nbad \xc3\x28 bytes \xff\xfe here\r\n",
        ),
    ],
)
def test_pathological_structure_is_accepted_and_shown_as_text(
    service: RunningDesk, name: str, raw: bytes
) -> None:
    assert service.send_mail(raw)[0] == 250, name
    assert handled(service) == ["done"], name
    [ticket] = tickets(service)
    card = service.wait_for(service.card, f"the card for the {name}")
    service.wait_for(lambda: service.thread(card.ts), f"the thread post for the {name}")
    with service.db.transaction() as session:
        [message] = session.scalars(select(Message)).all()
    assert message.body_markdown.strip(), name
    assert "<div>" not in message.body_markdown and "x{}" not in message.body_markdown, name
    assert ticket.number == 1


def test_a_forged_or_guessed_reply_key_selects_no_ticket(service: RunningDesk) -> None:
    first = head(Message_ID="<victim@c.test>") + b"\r\nmy private ticket\r\n"
    service.send_mail(first)
    service.wait_for(service.card, "the first card")
    real_key = tickets(service)[0].reply_key
    guessed = real_key[:-1] + ("a" if real_key[-1] != "a" else "b")

    guessed_address = f"support+{guessed}@acme.test"
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        service.send_mail(head(Message_ID="<x1@e.test>") + b"\r\nin\r\n", rcpt_tos=(guessed_address,))
    assert refused.value.recipients[guessed_address][0] == 550
    # The same guess in a header only, the envelope being the plain address: a new, separate ticket.
    forged = head(From="Mallory <m@evil.test>", To=f"support+{guessed}@acme.test", Message_ID="<x2@e.test>")
    service.send_mail(forged + b"\r\nlet me in\r\n", mail_from="m@evil.test")
    service.wait_for(lambda: service.card(2), "the second card")
    with service.db.transaction() as session:
        victim = session.scalars(select(Ticket).where(Ticket.number == 1)).one()
        messages = session.scalars(select(Message).where(Message.ticket_id == victim.id)).all()
    assert [m.body_markdown for m in messages] == ["my private ticket"]


def test_a_display_name_that_looks_like_another_address_is_not_the_requester(service: RunningDesk) -> None:
    raw = head(From='"ceo@acme.test" <mallory@evil.test>', Message_ID="<spoof@evil.test>") + b"\r\nPay it\r\n"
    service.send_mail(raw, mail_from="mallory@evil.test")
    [ack] = service.wait_for_mails(1)
    assert ack.rcpt_tos == ["mallory@evil.test"]
    with service.db.transaction() as session:
        assert session.scalars(select(Customer.email)).all() == ["mallory@evil.test"]


def test_without_acknowledgement_a_request_still_opens_its_ticket(start_service: StartService) -> None:
    service = start_service(acknowledge=False)
    service.send_mail(head(Message_ID="<quiet@c.test>") + b"\r\nno auto-reply please\r\n")
    service.wait_for(service.card, "the card")
    assert handled(service) == ["done"]
    assert service.sink.messages == []


def test_nul_characters_and_over_long_names_still_open_the_ticket(service: RunningDesk) -> None:
    # PostgreSQL refuses both in text columns; SQLite keeps them. Either way the request becomes a
    # ticket on the first attempt, with what could be kept.
    name = "Robert " + "Very-Long-Name " * 20  # 307 characters; a name column holds 200
    domain = ".".join(["a" * 63] * 3) + ".example.test"  # an organization is named after it
    subject = "Printer problem " + "very " * 120  # 616 characters, inside RFC 5322's 998
    raw = head(From=f'"{name}" <bob@{domain}>', Subject=subject, Message_ID="<nul@c.test>")
    raw += b"\r\nThe export contains\x00 a NUL byte.\r\n"
    assert service.send_mail(raw)[0] == 250

    service.wait_for(service.card, "the card")
    assert handled(service) == ["done"]
    with service.db.transaction() as session:
        ticket = session.scalars(select(Ticket)).one()
        message = session.scalars(select(Message)).one()
        customer = session.scalars(select(Customer)).one()
        assert customer.organization is not None
        organization = customer.organization.name
    assert message.body_markdown == "The export contains a NUL byte."
    assert ticket.subject == message.subject == subject[:500]
    assert customer.name == name[:200]
    assert organization == domain[:200]


def test_an_autoresponder_that_answers_every_acknowledgement_is_not_answered_for_ever(
    service: RunningDesk,
) -> None:
    """A vacation script without RFC 3834's headers answers each acknowledgement with a new mail:
    each opens a ticket. Past five acknowledgements in an hour the desk stops answering, which
    ends the loop; every mail is still a ticket."""
    robot = "Robot <robot@vendor.test>"
    for n in range(7):
        mail = head(From=robot, Subject=f"Out of office {n}", Message_ID=f"<away{n}@vendor.test>")
        assert (
            service.send_mail(mail + b"\r\nAway until Monday.\r\n", mail_from="robot@vendor.test")[0] == 250
        )
        handled(service)
    assert len(tickets(service)) == 7
    service.wait_for(lambda: len(service.sink.messages) >= 5, "the five acknowledgements")
    with service.db.read() as session:
        unsent = session.scalar(
            select(func.count())
            .select_from(Outbox)
            .where(Outbox.kind == "email.send", Outbox.state != "done")
        )
    assert unsent == 0 and len(service.sink.messages) == 5  # none waiting: the sixth and seventh never went
    last_card = service.wait_for(lambda: service.card(7), "the card of #7")
    service.wait_for_thread_text(last_card.ts, "No acknowledgement sent: robot@vendor.test opened 6 tickets")


def many_ids(count: int, domain: str) -> str:
    return " ".join(f"<id{n}@{domain}>" for n in range(count))


def test_a_message_id_header_of_many_ids_is_answered_and_opens_the_ticket(service: RunningDesk) -> None:
    """The intake reads the Message-ID before it answers DATA, on the event loop every part of the
    service shares. Each id was checked against all those kept before it: a header of 200,000 ids
    (3 MB, well inside the size limit) held the loop for minutes, and no mail, Slack request or
    delivery moved meanwhile. Only the first id is the message's."""
    raw = head(Message_ID=many_ids(200_000, "flood.test")) + b"\r\nHello\r\n"
    assert service.send_mail(raw)[0] == 250
    card = service.wait_for(service.card, "the card")
    service.wait_for_thread_text(card.ts, "Hello")
    with service.db.transaction() as session:
        [message] = session.scalars(select(Message)).all()
    assert message.email_message_id == "id0@flood.test"


def test_a_reply_with_a_references_header_of_many_ids_finds_its_ticket(service: RunningDesk) -> None:
    """Each of 200,000 References ids was checked against all kept before it, then looked up one
    query at a time: the reply sat in the queue for many minutes. The newest ids are the ones that
    name the conversation; those are looked up."""
    assert service.send_mail(head(Message_ID="<first@c.test>") + b"\r\nThe printer is on fire.\r\n")[0] == 250
    card = service.wait_for(service.card, "the card")
    [ack] = service.wait_for_mails(1)
    references = f"<first@c.test> {many_ids(200_000, 'flood.test')} {ack.message['Message-ID']}"
    reply = head(Subject="Re: Help", Message_ID="<second@c.test>", References=references)
    assert service.send_mail(reply + b"\r\nIt is still burning.\r\n")[0] == 250
    service.wait_for_thread_text(card.ts, "It is still burning.")
    assert [ticket.number for ticket in tickets(service)] == [1]


def test_a_content_type_of_many_parameters_opens_the_ticket(service: RunningDesk) -> None:
    """The email package parses a Content-Type again each time it is asked for a part of it, at a
    tenth of a millisecond per parameter (and, in its fallback policy, in quadratic time): one header
    of 100,000 parameters (1 MB) kept a worker busy for about two minutes, a larger one past the
    worker's claim on the mail (another then takes it and starts again). Only the first parameters of a
    header are read."""
    parameters = "; ".join(f"p{n}=v" for n in range(100_000))
    raw = head(Message_ID="<params@c.test>", Content_Type=f"text/plain; charset=utf-8; {parameters}")
    assert service.send_mail(raw + b"\r\nThe printer is on fire.\r\n")[0] == 250
    card = service.wait_for(service.card, "the card")
    service.wait_for_thread_text(card.ts, "The printer is on fire.")


def test_text_that_reads_as_an_encoded_word_reaches_the_customer_as_written(service: RunningDesk) -> None:
    """A subject or name holding the characters of an RFC 2047 encoded word (here one that decodes
    to a line break and a Bcc line) went out as they were, and the customer's mail client decoded
    them: the subject it showed held a line break and a header line nobody wrote. Such text is now
    encoded itself, so every reader shows exactly the characters of the ticket's subject and name."""
    literal = "=?utf-8?q?Evil=0D=0ABcc=3A_victim=40elsewhere=2Etest?="
    # Encoded once more on the way in: what the desk stores is the literal text above.
    wrapped = "=?utf-8?b?" + base64.b64encode(literal.encode()).decode() + "?="
    raw = head(From=f"{wrapped} <bob@customer.test>", Subject=wrapped, Message_ID="<literal@c.test>")
    assert service.send_mail(raw + b"\r\nbody\r\n")[0] == 250
    [ack] = service.wait_for_mails(1)
    [ticket] = tickets(service)
    assert ticket.subject == literal
    subject = str(ack.message["Subject"])
    assert literal in subject and "\n" not in subject and "\r" not in subject
    # The name as RFC 2047 decodes it (the space between two encoded words is not text; Python's
    # address parser keeps it, so the header is read here without that parser).
    encoded_name, address = parseaddr(str(email.message_from_bytes(ack.raw)["To"]))
    assert (str(make_header(decode_header(encoded_name))), address) == (literal, "bob@customer.test")


def test_bare_message_ids_of_several_words_keep_different_mails_apart(service: RunningDesk) -> None:
    """A Message-ID without <> and with spaces was keyed by its last word: `111 shared@c.test` and
    `222 shared@c.test` collided, and the second mail was answered 250 and dropped as a
    redelivery. Such a value is keyed by the whole mail; a true redelivery still counts once."""
    first = head(Message_ID="111 shared@c.test", Subject="Printer") + b"\r\nThe printer is on fire.\r\n"
    second = head(Message_ID="222 shared@c.test", Subject="Scanner") + b"\r\nThe scanner is gone.\r\n"
    assert service.send_mail(first)[0] == 250
    assert service.send_mail(second)[0] == 250
    assert service.send_mail(b"Received: from relay.c.test\r\n" + first)[0] == 250
    service.wait_for(lambda: len(tickets(service)) == 2 or None, "both tickets")
    handled(service)
    assert sorted(ticket.subject for ticket in tickets(service)) == ["Printer", "Scanner"]
    with service.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 2
