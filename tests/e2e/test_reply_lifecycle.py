"""The staff reply lifecycle and outbound mail, driven through the real interfaces
(SMTP into the intake, signed Slack events via the emulator, the mail sink)."""

from __future__ import annotations

import io
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from bot.operator import retry_outbox
from sandbox.mail_sink import ReceivedMail
from sandbox.workspace import ALICE, TRIAGE
from store.models import Delivery, Message, Outbox, OutboxState, Participant, Ticket, Visibility
from tests.e2e.conftest import SUPPORT, RunningDesk, StartService

pytestmark = pytest.mark.timeout(120)

REPLY_DELAY = 3.0
BOB = "bob@customer.test"
CAROL = "carol@customer.test"


def customer_mail(
    body: str,
    *,
    cc: str | None = "Carol <carol@customer.test>",
    to: str = SUPPORT,
    in_reply_to: str | None = None,
    subject: str = "Printer on fire",
) -> bytes:
    message = EmailMessage()
    message["From"] = "Bob Customer <bob@customer.test>"
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="customer.test")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(body)
    return message.as_bytes(policy=SMTP)


def message_at(service: RunningDesk, ts: str) -> Message | None:
    with service.db.transaction() as session:
        return session.scalar(select(Message).where(Message.slack_channel == TRIAGE, Message.slack_ts == ts))


def reactions(service: RunningDesk, ts: str) -> dict[str, list[str]]:
    message = service.emulator.message(TRIAGE, ts)
    return message.reactions if message is not None else {}


def mails_to(service: RunningDesk, address: str) -> list:
    return [m for m in service.sink.messages if address in m.rcpt_tos]


def plain(mail) -> str:
    body = mail.message.get_body(("plain",))
    return str(body.get_content()) if body is not None else ""


@pytest.fixture
def desk(start_service: StartService) -> RunningDesk:
    return start_service(reply_delay_seconds=REPLY_DELAY)


def email_ticket(service: RunningDesk, cc: str | None = "Carol <carol@customer.test>") -> str:
    assert service.send_mail(customer_mail("The printer is on fire.", cc=cc))[0] == 250
    card = service.wait_for(service.card, "the card")
    service.wait_for_thread_text(card.ts, "The printer is on fire.")
    service.wait_for_mails(1)  # the acknowledgement
    return card.ts


def test_a_failed_reply_edited_into_a_note_becomes_one(desk: RunningDesk) -> None:
    """A reply the relay refused reached nobody: staff editing it to start with `note:` are taking
    it back. The desk said "That reply was already delivered" (false: it shows ❌), kept it public,
    and an operator's `servicedesk outbox --retry` of the failed row then mailed it."""
    card_ts = email_ticket(desk, cc=None)
    desk.sink.reject_recipient(BOB, 550, "5.1.1 mailbox gone")
    reply_ts = desk.post_as(ALICE, "Internal pricing: 40% margin", thread_ts=card_ts)
    desk.wait_for(lambda: "x" in reactions(desk, reply_ts), "the failed receipt")
    desk.wait_for_thread_text(card_ts, "Couldn't deliver")
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "note: Internal pricing: 40% margin")
    desk.wait_for(lambda: "lock" in reactions(desk, reply_ts), "the note marker")
    stored = message_at(desk, reply_ts)
    assert stored is not None and stored.visibility == Visibility.INTERNAL
    assert "was already delivered" not in desk.thread_text(card_ts)
    # The operator, having fixed the address, sends the failed rows again: the note stays home.
    desk.sink.clear_faults()
    with desk.db.read() as session:
        [row_id] = session.scalars(
            select(Outbox.id).where(Outbox.message_id == stored.id, Outbox.state == OutboxState.FAILED)
        ).all()
    assert retry_outbox(desk.settings, row_id, out=io.StringIO()) == 0
    desk.wait_for(lambda: row_state(desk, row_id) == OutboxState.DONE, "the retried row to finish")
    assert [m for m in mails_to(desk, BOB) if "pricing" in plain(m)] == []
    assert "x" not in reactions(desk, reply_ts)


def row_state(service: RunningDesk, row_id: int) -> str | None:
    with service.db.read() as session:
        return session.scalar(select(Outbox.state).where(Outbox.id == row_id))


def desk_command(service: RunningDesk, text: str) -> str:
    interaction = service.emulator.user_command(ALICE, TRIAGE, "/desk", text).wait(10)
    return str((interaction.ack_payload or {}).get("text") or "")


def test_a_reply_cancelled_in_its_window_is_not_the_parent_of_the_next(desk: RunningDesk) -> None:
    """A ticket opened with `/desk new` has no mail of the customer's: its replies thread on the
    desk's own. One deleted inside its undo window was never sent, so the customer's mail client
    has no such message: the next reply must not name it as its parent."""
    answer = desk_command(desk, "new <mailto:dan@globex.example|dan@globex.example> Printer on fire")
    assert answer.startswith("Opened #1")
    card = desk.wait_for(desk.card, "the card")
    wrong_ts = desk.post_as(ALICE, "Wrong answer", thread_ts=card.ts)
    desk.wait_for(lambda: message_at(desk, wrong_ts), "the reply stored")
    desk.emulator.user_delete(ALICE, TRIAGE, wrong_ts)
    desk.wait_for(
        lambda: (m := message_at(desk, wrong_ts)) is not None and m.delivery == Delivery.CANCELLED,
        "the reply cancelled",
    )
    desk.post_as(ALICE, "Right answer", thread_ts=card.ts)
    [mail] = desk.wait_for_mails(1)
    assert "Right answer" in plain(mail)
    with desk.db.read() as session:
        [never_sent] = [
            row.payload["message_id_header"]
            for row in session.scalars(select(Outbox).where(Outbox.state == OutboxState.CANCELLED))
        ]
    assert mail.message["In-Reply-To"] != f"<{never_sent}>"
    assert never_sent not in (mail.message["References"] or "")


def test_receipts_on_a_reply_to_slack_and_email_come_once_each(start_service: StartService) -> None:
    from sandbox.workspace import CONNECT, DAN

    service = start_service(reply_delay_seconds=REPLY_DELAY, intake_channels=(CONNECT,))
    customer_ts = service.emulator.user_post(DAN, CONNECT, "Printer on fire")
    card = service.wait_for(service.card, "the card")
    service.post_as(ALICE, "!cc add boss@globex.example", thread_ts=card.ts)
    service.wait_for_thread_text(card.ts, "added boss@globex.example")
    reply_ts = service.post_as(ALICE, "Unplug it", thread_ts=card.ts)
    service.wait_for(lambda: "white_check_mark" in reactions(service, reply_ts), "delivered")
    service.wait_for(lambda: mails_to(service, "boss@globex.example"), "the mail")
    service.wait_for(lambda: "hourglass_flowing_sand" not in reactions(service, reply_ts), "pending removed")
    adds = [
        c.params.get("name")
        for c in service.emulator.calls_to("reactions.add")
        if c.params.get("timestamp") == reply_ts
    ]
    removes = [
        c.params.get("name")
        for c in service.emulator.calls_to("reactions.remove")
        if c.params.get("timestamp") == reply_ts
    ]
    assert sorted(adds) == ["hourglass_flowing_sand", "white_check_mark"], adds
    assert removes == ["hourglass_flowing_sand"], removes
    texts = [m.text for m in service.emulator.messages(CONNECT, thread_ts=customer_ts)]
    assert sum("Unplug it" in t for t in texts) == 1


NOTES = [
    "note: plain",
    "   note: leading spaces",
    "NOTE: upper",
    "Note:no space",
    "*note:* bold",
    "_note:_ italic",
    "_note_: italic word",
    "`note:` code",
    "~note:~ struck",
    "*NOTE*: bold word",
    "\u00a0note: nbsp",
]


def test_every_form_of_note_stays_home(desk: RunningDesk) -> None:
    card_ts = email_ticket(desk)
    stamps = [desk.post_as(ALICE, text + " SECRET", thread_ts=card_ts) for text in NOTES]
    desk_command(desk, "note 1 /desk SECRET")
    for ts, text in zip(stamps, NOTES, strict=True):
        desk.wait_for(lambda ts=ts: "lock" in reactions(desk, ts), f"the lock on {text!r}")
    desk.post_as(ALICE, "marker reply", thread_ts=card_ts)
    desk.wait_for(lambda: len(mails_to(desk, CAROL)) >= 1, "the marker")
    desk.wait_for(lambda: len(mails_to(desk, BOB)) >= 2, "the marker to bob")
    for mail in desk.sink.messages:
        assert "SECRET" not in mail.raw.decode("utf-8", "replace")


def dsn(original: ReceivedMail, recipient: str) -> bytes:
    """A Postfix-style delivery status notification (RFC 3464) for one of the desk's mails."""
    headers = original.raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>
To: {original.mail_from}
Subject: Undelivered Mail Returned to Sender
Message-ID: {make_msgid(domain="mx.customer.test")}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain

Your message could not be delivered to {recipient}.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.customer.test

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 carol left the company

--BOUNDARY
Content-Type: text/rfc822-headers

{headers}

--BOUNDARY--
"""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def participants(service: RunningDesk) -> dict[str, Participant]:
    with service.db.read() as session:
        return {p.email: p for p in session.scalars(select(Participant))}


def test_a_bounce_is_recorded_against_the_right_participant(desk: RunningDesk) -> None:
    card_ts = email_ticket(desk)
    desk.post_as(ALICE, "First answer", thread_ts=card_ts)
    [to_carol] = desk.wait_for(lambda: mails_to(desk, CAROL), "the mail to carol")
    desk.wait_for(lambda: len(mails_to(desk, BOB)) >= 2, "the mail to bob")
    assert "bounce-" in to_carol.mail_from
    code, _ = desk.send_mail(dsn(to_carol, CAROL), mail_from="", rcpt_tos=(to_carol.mail_from,))
    assert code == 250
    desk.wait_for_thread_text(card_ts, f"Mail to {CAROL} bounced")
    found = participants(desk)
    assert found[CAROL].bounced_at is not None and found[BOB].bounced_at is None
    assert "carol left the company" in (found[CAROL].bounce_reason or "")
    desk.post_as(ALICE, "Second answer", thread_ts=card_ts)
    second = desk.wait_for(lambda: [m for m in mails_to(desk, BOB) if "Second answer" in plain(m)], "the 2nd")
    assert second[0].message["Cc"] is None
    assert len(mails_to(desk, CAROL)) == 1
    assert desk.card() is not None and len(desk.cards()) == 1  # the DSN opened no ticket


def test_an_unsubscribed_participant_gets_nothing_more(desk: RunningDesk) -> None:
    card_ts = email_ticket(desk)
    desk.post_as(ALICE, "First answer", thread_ts=card_ts)
    [to_carol] = desk.wait_for(lambda: mails_to(desk, CAROL), "the mail to carol")
    unsubscribe = to_carol.mail_from.replace("+bounce-", "+unsub-")
    assert f"<mailto:{unsubscribe}>" in to_carol.message["List-Unsubscribe"]
    message = EmailMessage()
    message["From"] = CAROL
    message["To"] = unsubscribe
    message["Subject"] = "unsubscribe"
    message["Message-ID"] = make_msgid(domain="customer.test")
    message.set_content("unsubscribe")
    assert desk.send_mail(message.as_bytes(policy=SMTP), mail_from=CAROL, rcpt_tos=(unsubscribe,))[0] == 250
    desk.wait_for(lambda: participants(desk)[CAROL].unsubscribed_at, "carol unsubscribed")
    desk.post_as(ALICE, "Second answer", thread_ts=card_ts)
    desk.wait_for(lambda: [m for m in mails_to(desk, BOB) if "Second answer" in plain(m)], "the 2nd")
    desk_command(desk, "close 1")
    desk.wait_for(
        lambda: [m for m in mails_to(desk, BOB) if m.message["Auto-Submitted"] == "auto-generated"],
        "the close notice",
    )
    assert len(mails_to(desk, CAROL)) == 1
    assert all(CAROL not in str(m.message["Cc"] or "") for m in mails_to(desk, BOB)[2:])


def test_a_retry_after_a_relay_4xx_keeps_the_message_id(desk: RunningDesk) -> None:
    card_ts = email_ticket(desk, cc=None)
    desk.sink.fail_next(1, 451)
    desk.post_as(ALICE, "Answer", thread_ts=card_ts)
    [mail] = desk.wait_for(
        lambda: [m for m in mails_to(desk, BOB) if "Answer" in plain(m)], "the reply", timeout=60
    )
    assert desk.sink.refused == 1
    with desk.db.read() as session:
        [row] = session.scalars(
            select(Outbox).where(Outbox.kind == "email.send", Outbox.message_id.is_not(None))
        ).all()
        assert row.attempts >= 2
        assert mail.message["Message-ID"] == f"<{row.payload['message_id_header']}>"


def test_an_edit_after_email_delivery_sends_nothing_again(desk: RunningDesk) -> None:
    card_ts = email_ticket(desk)
    reply_ts = desk.post_as(ALICE, "Version one", thread_ts=card_ts)
    desk.wait_for(lambda: "white_check_mark" in reactions(desk, reply_ts), "delivered")
    count = len(desk.sink.messages)
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "Version two")
    desk.wait_for_thread_text(card_ts, "already has the earlier text by email")
    desk.emulator.user_delete(ALICE, TRIAGE, reply_ts)
    desk.wait_for_thread_text(card_ts, "Deleted after delivery")
    desk.post_as(ALICE, "marker", thread_ts=card_ts)
    desk.wait_for(lambda: len(desk.sink.messages) >= count + 2, "the marker")
    assert len(desk.sink.messages) == count + 2
    assert not any("Version two" in plain(m) for m in desk.sink.messages)


def test_rapid_edits_inside_the_window_send_the_last_once(desk: RunningDesk) -> None:
    card_ts = email_ticket(desk)
    reply_ts = desk.post_as(ALICE, "Edit zero", thread_ts=card_ts)
    for n in range(1, 6):
        desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, f"Edit number {n}")
    desk.wait_for(lambda: "white_check_mark" in reactions(desk, reply_ts), "delivered")
    replies = [m for m in desk.sink.messages if "Edit" in plain(m)]
    assert sorted(m.rcpt_tos[0] for m in replies) == [BOB, CAROL]
    assert all("Edit number 5" in plain(m) and "Edit zero" not in plain(m) for m in replies)


def test_threading_holds_across_a_long_conversation(start_service: StartService) -> None:
    # Twelve rounds, so References outgrows its cap of 20; no edits here, so a short reply delay.
    desk = start_service(reply_delay_seconds=0.3)
    first = customer_mail("Round 0", cc=None)
    assert desk.send_mail(first)[0] == 250
    card = desk.wait_for(desk.card, "the card")
    desk.wait_for_mails(1)
    from email import message_from_bytes

    root = message_from_bytes(first)["Message-ID"]
    chain = [root]
    with desk.db.read() as session:
        key = session.scalars(select(Ticket.reply_key)).one()
    reply_to = f"support+{key}@acme.test"
    for n in range(1, 13):
        desk.post_as(ALICE, f"Staff round {n}", thread_ts=card.ts)
        mail = desk.wait_for(
            lambda n=n: [
                m
                for m in mails_to(desk, BOB)
                if f"Staff round {n}\n" in plain(m) or plain(m).startswith(f"Staff round {n}")
            ],
            f"staff round {n}",
        )[0].message
        assert mail["In-Reply-To"] == chain[-1], (n, mail["In-Reply-To"], chain[-1])
        refs = mail["References"].split()
        assert refs[0] == root and refs[-1] == chain[-1], (n, refs)
        assert len(refs) <= 20
        chain.append(mail["Message-ID"])
        answer = EmailMessage()
        answer["From"] = "Bob Customer <bob@customer.test>"
        answer["To"] = reply_to
        answer["Subject"] = mail["Subject"]
        answer["Message-ID"] = make_msgid(domain="customer.test")
        answer["In-Reply-To"] = mail["Message-ID"]
        answer["References"] = " ".join([*mail["References"].split(), mail["Message-ID"]])
        answer.set_content(f"Customer round {n}")
        assert desk.send_mail(answer.as_bytes(policy=SMTP))[0] == 250
        desk.wait_for_thread_text(card.ts, f"Customer round {n}")
        chain.append(answer["Message-ID"])
    assert len(desk.cards()) == 1


@pytest.mark.parametrize("public", [True, False])
def test_each_recipient_gets_their_own_links_and_sees_the_others_in_cc(
    start_service: StartService, public: bool
) -> None:
    service = start_service(reply_delay_seconds=0.5, **({} if public else {"public_url": ""}))
    card_ts = email_ticket(service, cc="Carol <carol@customer.test>, dave@customer.test")
    service.post_as(ALICE, "Answer for all", thread_ts=card_ts)
    mails = service.wait_for(
        lambda: (
            (found := [m for m in service.sink.messages if "Answer for all" in plain(m)])
            and len(found) == 3
            and found
        ),
        "three copies",
    )
    keys = participants(service)
    by_rcpt = {m.rcpt_tos[0]: m for m in mails}
    assert sorted(by_rcpt) == sorted([BOB, CAROL, "dave@customer.test"])
    for address, mail in by_rcpt.items():
        assert len(mail.rcpt_tos) == 1
        own = keys[address].unsubscribe_key
        assert mail.mail_from == f"support+bounce-{own}@acme.test"
        others = [p.unsubscribe_key for e, p in keys.items() if e != address]
        raw = mail.raw.decode("utf-8", "replace")
        assert own in raw and not any(key in raw for key in others)
        cc = str(mail.message["Cc"] or "")
        assert address not in cc and all(o in cc for o in by_rcpt if o != address)
        unsubscribe = str(mail.message["List-Unsubscribe"])
        assert f"mailto:support+unsub-{own}@acme.test" in unsubscribe
        assert (f"/unsubscribe/{own}" in unsubscribe) == public
        text = plain(mail)
        assert ("Stop emails about this ticket" in text) == public
        assert "None" not in text


def test_a_subject_typed_with_line_breaks_injects_no_header(desk: RunningDesk) -> None:
    answer = desk_command(
        desk,
        "new <mailto:dan@globex.example|dan@globex.example> Drucker \u00fcberhitzt"
        "\r\nBcc: victim@evil.test\nX-Evil: 1",
    )
    assert answer.startswith("Opened #1"), answer
    card = desk.wait_for(desk.card, "the card")
    desk.post_as(ALICE, "Answer", thread_ts=card.ts)
    [mail] = desk.wait_for_mails(1)
    assert mail.rcpt_tos == ["dan@globex.example"]
    assert mail.message["Bcc"] is None and mail.message["X-Evil"] is None
    assert "\u00fcberhitzt" in mail.message["Subject"]
    assert b"\nBcc:" not in mail.raw and b"\nX-Evil:" not in mail.raw


def test_a_bounce_to_the_plain_address_finds_the_participant_by_message_id(desk: RunningDesk) -> None:
    """Some servers return the report to the From address, not to the envelope sender."""
    card_ts = email_ticket(desk)
    desk.post_as(ALICE, "First answer", thread_ts=card_ts)
    [to_carol] = desk.wait_for(lambda: mails_to(desk, CAROL), "the mail to carol")
    desk.wait_for(lambda: len(mails_to(desk, BOB)) >= 2, "the mail to bob")
    code, _ = desk.send_mail(dsn(to_carol, CAROL), mail_from="", rcpt_tos=(SUPPORT,))
    assert code == 250
    desk.wait_for_thread_text(card_ts, f"Mail to {CAROL} bounced")
    found = participants(desk)
    assert found[CAROL].bounced_at is not None and found[BOB].bounced_at is None
    assert len(desk.cards()) == 1


def test_a_reply_with_mentions_emoji_links_and_code_reads_well_by_email(desk: RunningDesk) -> None:
    card_ts = email_ticket(desk, cc=None)
    desk.post_as(
        ALICE,
        "Hi, <@U0BOB> will help :tada: see <https://docs.acme.test/x?a=1&b=2|the docs> "
        "and run `rm -rf /tmp/x` <b>not html</b>",
        thread_ts=card_ts,
    )
    mail = desk.wait_for(lambda: [m for m in mails_to(desk, BOB) if "will help" in plain(m)], "the reply")[0]
    text = plain(mail)
    html = mail.message.get_body(("html",)).get_content()
    assert "<@U0BOB>" not in text and "U0BOB" not in html, text
    assert "Bob" in text
    assert "\U0001f389" in text and ":tada:" not in text, text
    assert 'href="https://docs.acme.test/x?a=1&amp;b=2"' in html, html
    assert "rm -rf /tmp/x</code>" in html, html
    assert "<b>not html</b>" not in html


def test_a_refused_mail_names_a_fix_that_works_for_the_requester_and_for_a_cc(desk: RunningDesk) -> None:
    """`/desk cc N remove` refuses the requester: the thread must not send staff to it for them."""
    card_ts = email_ticket(desk)
    desk.sink.reject_recipient(BOB, 550, "5.1.1 mailbox unavailable")
    desk.sink.reject_recipient(CAROL, 550, "5.1.1 mailbox unavailable")
    desk.post_as(ALICE, "Answer", thread_ts=card_ts)
    desk.wait_for_thread_text(card_ts, f"Couldn't deliver to {BOB}")
    text = desk.wait_for_thread_text(card_ts, f"Couldn't deliver to {CAROL}")
    [bob_line] = [line for line in text.splitlines() if f"Couldn't deliver to {BOB}" in line]
    [carol_line] = [line for line in text.splitlines() if f"Couldn't deliver to {CAROL}" in line]
    assert "remove" not in bob_line and "who opened the ticket" in bob_line
    assert f"`/desk cc 1 remove {CAROL}`" in carol_line


def test_a_subject_of_one_long_word_starts_on_the_subject_line(service: RunningDesk) -> None:
    """A ticket titled by a URL (no `Re:` before it on the first mail of `/desk new`) was folded right
    after "Subject:", so readers that do not trim the unfolded value (Python's own among them) showed
    it with a leading space. Such a value now starts on the header's line, as References does."""
    url = "https://status.acme.test/incidents/2026-12-07-printer-fleet-outage-in-building-seven"
    answer = desk_command(service, f"new <mailto:dan@globex.example|dan@globex.example> {url}")
    assert answer.startswith("Opened #1"), answer
    card = service.wait_for(service.card, "the card")
    service.post_as(ALICE, "We are on it.", thread_ts=card.ts)
    [mail] = service.wait_for_mails(1)
    assert mail.message["Subject"] == f"{url} [#1]"
    assert f"\r\nSubject: {url}".encode() in mail.raw
