"""EmailIngest on the real store: what one inbound mail becomes, in one transaction."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import event, select

from mail.ingest import NO_TEXT, EmailIngest, LostClaim
from store import actions, inbound
from store.actions import Actor
from store.actions.common import MailThread
from store.context import Desk
from store.db import Database
from store.intake_keys import KeyKind, lookup_address_key
from store.models import (
    Attachment,
    Customer,
    InboundItem,
    Message,
    Outbox,
    Participant,
    Status,
    Ticket,
    TicketEvent,
)
from store.settings import Settings

SUPPORT = "support@acme.test"


def make_desk(db: Database, tmp_path: Path, **overrides: Any) -> Desk:
    settings = Settings(
        database_url=db.url,
        support_address=SUPPORT,
        files_dir=tmp_path / "files",
        triage_channel="C0TRIAGE",
        **overrides,
    )
    return Desk.build(settings, db)


@pytest.fixture
def desk(db: Database, tmp_path: Path) -> Desk:
    return make_desk(db, tmp_path)


def mail(
    body: str = "My printer is on fire.",
    *,
    message_id: str | None = "<m1@customer.test>",
    sender: str = "Bob Customer <bob@customer.test>",
    to: str = SUPPORT,
    **headers: str,
) -> bytes:
    lines = [f"From: {sender}", f"To: {to}", "Subject: Printer on fire"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def ingest(
    desk: Desk,
    raw: bytes,
    *,
    mail_from: str = "bob@customer.test",
    rcpt_tos: tuple[str, ...] = (SUPPORT,),
    dedupe_key: str | None = None,
) -> None:
    """As the intake and the worker would: store the raw mail, claim it, handle it."""
    key = dedupe_key or "email:" + hashlib.sha256(raw).hexdigest()
    payload = {"mail_from": mail_from, "rcpt_tos": list(rcpt_tos)}
    assert inbound.accept(desk.db, "email", key, payload=payload, raw=raw)
    [work] = inbound.claim(desk.db, "w1")
    asyncio.run(EmailIngest(desk).handle(work, "w1"))


def rows(desk: Desk, model: Any, *where: Any) -> list[Any]:
    with desk.db.transaction() as session:
        return list(session.scalars(select(model).where(*where).order_by(model.id)))


def outbox(desk: Desk, kind: str) -> list[Outbox]:
    return rows(desk, Outbox, Outbox.kind == kind)


def thread_lines(desk: Desk) -> list[str]:
    return [row.payload["text"] for row in outbox(desk, "slack.thread_line")]


def the_ticket(desk: Desk) -> Ticket:
    [ticket] = rows(desk, Ticket)
    return ticket


def test_a_new_request_opens_a_ticket_with_its_message_and_acknowledgement(desk: Desk) -> None:
    raw = mail("Help!\n\nOn Mon, 1 Jan 2024, Alice <a@acme.test> wrote:\n> earlier text")
    ingest(desk, raw)

    ticket = the_ticket(desk)
    assert (ticket.number, ticket.subject, ticket.origin) == (1, "Printer on fire", "email")
    assert ticket.status == "open"
    [customer] = rows(desk, Customer)
    assert (customer.email, customer.name) == ("bob@customer.test", "Bob Customer")
    [message] = rows(desk, Message)
    assert message.body_markdown == "Help!"  # quoted history trimmed for the Slack view
    assert "earlier text" in (message.full_markdown or "")  # the whole body kept
    assert message.email_message_id == "m1@customer.test"
    assert message.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert desk.files.get(message.raw_sha256) == raw
    [ack] = outbox(desk, "email.send")
    assert ack.payload["template"] == "acknowledgement"
    assert ack.payload["to"] == "bob@customer.test" and ack.payload["cc"] == []
    assert ack.payload["in_reply_to"] == "m1@customer.test"
    assert ack.payload["references"] == ["m1@customer.test"]
    [requester] = rows(desk, Participant)
    assert ack.payload["participant_id"] == requester.id  # its unsubscribe link names them
    assert [row.kind for row in rows(desk, Outbox, Outbox.kind.like("slack.%"))] == [
        "slack.card",
        "slack.thread_post",
    ]
    [item] = rows(desk, InboundItem)
    assert item.state == "done" and item.raw is None


def test_attachments_are_stored_under_their_hash(desk: Desk) -> None:
    raw = (
        b"From: bob@customer.test\r\nTo: support@acme.test\r\nSubject: logs\r\nMessage-ID: <a@c.test>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b'--b\r\nContent-Type: text/plain; name="../../etc/passwd"\r\n'
        b'Content-Disposition: attachment; filename="../../etc/passwd"\r\n\r\nroot:x\r\n--b--\r\n'
    )
    ingest(desk, raw)

    [attachment] = rows(desk, Attachment)
    assert "/" not in attachment.filename
    assert desk.files.get(attachment.sha256).strip() == b"root:x"


def test_cc_addresses_become_participants_but_never_our_own(desk: Desk) -> None:
    raw = mail(Cc="Carol <carol@customer.test>, support+xyz@acme.test, SUPPORT@acme.test, dan@other.test")
    ingest(desk, raw)

    emails = [(p.email, p.role) for p in rows(desk, Participant)]
    assert emails == [
        ("bob@customer.test", "requester"),
        ("carol@customer.test", "cc"),
        ("dan@other.test", "cc"),
    ]
    assert [row.payload["template"] for row in outbox(desk, "email.send")] == ["acknowledgement"]


@pytest.mark.parametrize("sender", ["root@localhost", "ops@[10.0.0.1]"])
def test_every_sender_the_intake_accepts_opens_a_ticket(desk: Desk, sender: str) -> None:
    # A host without a dotted domain, an address literal: the intake took them, so must the store.
    ingest(
        desk,
        mail(sender=f"Ops <{sender}>", Cc=f"Backup <backup@{sender.partition('@')[2]}>"),
        mail_from=sender,
    )
    assert [c.email for c in rows(desk, Customer)] == [sender]
    assert sorted(p.email for p in rows(desk, Participant)) == sorted(
        [sender, f"backup@{sender.partition('@')[2]}"]
    )


def test_cc_participants_keep_the_names_the_mail_gave_them(desk: Desk) -> None:
    ingest(desk, mail(Cc='"Ortiz, Sam" <sam@customer.test>, dan@other.test'))
    names = {p.email: p.name for p in rows(desk, Participant)}
    assert names["sam@customer.test"] == "Ortiz, Sam"
    assert names["dan@other.test"] == ""


def test_a_copy_through_an_alias_adds_its_cc_but_not_the_alias_it_was_sent_to(desk: Desk) -> None:
    ingest(desk, mail(to="help@customer.test", Cc="boss@customer.test"))
    assert [p.email for p in rows(desk, Participant)] == ["bob@customer.test", "boss@customer.test"]
    reply = mail("More", message_id="<m2@customer.test>", to="help@customer.test", Cc="it@customer.test")
    ingest(desk, reply.replace(b"Subject:", b"In-Reply-To: <m1@customer.test>\r\nSubject:"))
    assert len(rows(desk, Ticket)) == 1
    assert [p.email for p in rows(desk, Participant)][-1] == "it@customer.test"  # a later mail's Cc too


def test_the_acknowledgement_can_be_turned_off(db: Database, tmp_path: Path) -> None:
    desk = make_desk(db, tmp_path, acknowledge=False)
    ingest(desk, mail())
    assert the_ticket(desk).number == 1
    assert outbox(desk, "email.send") == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied"},
        {"X_Autoreply": "yes"},
        {"Precedence": "bulk"},
        {"Precedence": "junk"},
        {"List_Id": "<news.example>", "Precedence": "list"},
    ],
)
def test_automatic_and_list_mail_opens_nothing_and_gets_no_reply(desk: Desk, headers: dict[str, str]) -> None:
    ingest(desk, mail(**headers))
    assert rows(desk, Ticket) == []
    assert rows(desk, Outbox) == []
    assert [item.state for item in rows(desk, InboundItem)] == ["done"]


def test_null_sender_and_mailer_daemon_open_nothing(desk: Desk) -> None:
    ingest(desk, mail(message_id="<n1@x.test>"), mail_from="")
    ingest(desk, mail(message_id="<n2@x.test>", sender="MAILER-DAEMON@mx.customer.test"))
    assert rows(desk, Ticket) == []


def test_mail_from_our_own_address_is_a_loop_and_ignored(desk: Desk) -> None:
    ingest(desk, mail(sender=f"Support <{SUPPORT}>"))
    ingest(desk, mail(message_id="<m2@x.test>", sender="support+abc@acme.test"))
    assert rows(desk, Ticket) == []


def test_a_display_name_that_looks_like_an_address_is_not_the_requester(desk: Desk) -> None:
    ingest(desk, mail(sender='"ceo@customer.test" <mallory@evil.test>'))
    [customer] = rows(desk, Customer)
    assert customer.email == "mallory@evil.test"


def reply_key(desk: Desk) -> str:
    return the_ticket(desk).reply_key


def test_a_bcc_copy_finds_its_ticket_by_the_envelope_key_alone(desk: Desk) -> None:
    ingest(desk, mail())
    key = reply_key(desk)
    ingest(
        desk,
        mail("More details", message_id="<m2@customer.test>", to="someone@else.test"),
        rcpt_tos=(f"support+{key}@acme.test",),
    )
    assert len(rows(desk, Ticket)) == 1
    assert [m.body_markdown for m in rows(desk, Message)] == ["My printer is on fire.", "More details"]
    assert len(outbox(desk, "slack.card")) == 1


def test_the_key_in_a_recipient_header_finds_the_ticket(desk: Desk) -> None:
    ingest(desk, mail())
    key = reply_key(desk)
    ingest(desk, mail("Via To", message_id="<m2@customer.test>", to=f"support+{key}@acme.test"))
    assert len(rows(desk, Ticket)) == 1 and len(rows(desk, Message)) == 2


def test_in_reply_to_one_of_our_mails_finds_the_ticket(desk: Desk) -> None:
    ingest(desk, mail())
    [ack] = outbox(desk, "email.send")
    sent_id = ack.payload["message_id_header"]
    ingest(
        desk,
        mail("Thanks", message_id="<m2@c.test>", In_Reply_To=f"<{sent_id}>", References=f"<{sent_id}>"),
    )
    assert len(rows(desk, Ticket)) == 1 and len(rows(desk, Message)) == 2


def test_in_reply_to_an_unknown_message_opens_a_new_ticket(desk: Desk) -> None:
    ingest(desk, mail(In_Reply_To="<never-seen@elsewhere.test>"))
    assert the_ticket(desk).number == 1


def test_a_reply_to_a_resolved_ticket_reopens_it_and_the_thread_says_so(desk: Desk) -> None:
    ingest(desk, mail())
    with desk.db.transaction() as session:
        ticket = session.scalars(select(Ticket)).one()
        actions.set_status(session, desk.policy, ticket, Status.RESOLVED, Actor("Alice", slack_id="U0ALICE"))
        key = ticket.reply_key
    ingest(desk, mail("Still broken", message_id="<m2@c.test>"), rcpt_tos=(f"support+{key}@acme.test",))

    assert the_ticket(desk).status == "open"
    assert thread_lines(desk)[-1] == "Bob Customer reopened the ticket"
    assert [e.kind for e in rows(desk, TicketEvent, TicketEvent.kind == "reopened")] == ["reopened"]


def test_a_later_reply_adds_new_cc_and_its_new_sender(desk: Desk) -> None:
    ingest(desk, mail())
    key = reply_key(desk)
    ingest(
        desk,
        mail("Adding Erin", message_id="<m2@c.test>", sender="frank@customer.test", Cc="erin@customer.test"),
        rcpt_tos=(f"support+{key}@acme.test",),
    )
    assert [p.email for p in rows(desk, Participant)] == [
        "bob@customer.test",
        "frank@customer.test",
        "erin@customer.test",
    ]


def test_a_new_ticket_its_message_and_its_cc_share_the_ticket_time(desk: Desk) -> None:
    with freeze_time("2026-03-02 09:00:00", tick=True):
        ingest(desk, mail(Cc="carol@customer.test, dan@other.test"))
    ticket = the_ticket(desk)
    [message] = rows(desk, Message)
    times = {ticket.updated_at, message.created_at, *(p.created_at for p in rows(desk, Participant))}
    # One change at one time: the ticket row is written once, not again for its message and Cc's.
    assert times == {ticket.created_at}

    with freeze_time("2026-03-02 09:05:00"):
        ingest(desk, mail("Still on fire", message_id="<m2@customer.test>", In_Reply_To="<m1@customer.test>"))
    later = the_ticket(desk)
    assert later.created_at == ticket.created_at
    assert later.updated_at.replace(tzinfo=None) == datetime(2026, 3, 2, 9, 5)  # a later mail moves it


def test_the_same_message_handled_twice_is_stored_once(desk: Desk) -> None:
    raw = mail()
    ingest(desk, raw, dedupe_key="email:first")
    ingest(desk, raw, dedupe_key="email:second")  # e.g. a redelivery the intake could not match
    assert len(rows(desk, Message)) == 1 and len(rows(desk, Ticket)) == 1
    assert [item.state for item in rows(desk, InboundItem)] == ["done", "done"]


def test_participants_are_capped_and_the_rest_named_in_the_thread(db: Database, tmp_path: Path) -> None:
    desk = make_desk(db, tmp_path, max_participants=3)
    cc = ", ".join(f"p{n}@customer.test" for n in range(30))
    ingest(desk, mail(Cc=cc))

    assert len(rows(desk, Participant, Participant.role == "cc")) == 3
    [line] = thread_lines(desk)
    assert line.startswith("Not added as participants (limit of 3 reached), so not mailed: p3@customer.test")
    assert line.endswith("and 7 more.")
    assert [row.payload["to"] for row in outbox(desk, "email.send")] == ["bob@customer.test"]


def test_mail_to_an_unsubscribe_address_unsubscribes_that_participant(desk: Desk) -> None:
    ingest(desk, mail())
    [participant] = rows(desk, Participant)
    ingest(
        desk,
        mail("unsubscribe", message_id="<u1@c.test>"),
        rcpt_tos=(f"support+unsub-{participant.unsubscribe_key}@acme.test",),
    )
    [participant] = rows(desk, Participant)
    assert participant.unsubscribed_at is not None
    assert len(rows(desk, Message)) == 1
    assert thread_lines(desk) == ["bob@customer.test unsubscribed from this ticket's email (email)."]


def dsn(original_id: str, recipient: str, *, status: str = "5.1.1", action: str = "failed") -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\n"
        f"To: {SUPPORT}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-" + status + "@mx.customer.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        "--r\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} user unknown\r\n"
        "--r\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{original_id}>\r\nFrom: {SUPPORT}\r\n"
        "--r--\r\n"
    ).encode()


def test_a_bounce_to_the_bounce_address_is_recorded_on_that_participant(desk: Desk) -> None:
    ingest(desk, mail(Cc="carol@customer.test"))
    carol = rows(desk, Participant, Participant.email == "carol@customer.test")[0]
    ingest(
        desk,
        dsn("whatever@acme.test", "carol@customer.test"),
        mail_from="",
        rcpt_tos=(f"support+bounce-{carol.unsubscribe_key}@acme.test",),
    )
    [carol] = rows(desk, Participant, Participant.email == "carol@customer.test")
    assert carol.bounced_at is not None and "5.1.1" in (carol.bounce_reason or "")
    assert thread_lines(desk)[-1].startswith("Mail to carol@customer.test bounced:")
    assert len(rows(desk, Ticket)) == 1 and len(rows(desk, Message)) == 1


def test_a_bounce_is_matched_by_the_message_id_of_our_mail(desk: Desk) -> None:
    ingest(desk, mail())
    [ack] = outbox(desk, "email.send")
    ingest(desk, dsn(ack.payload["message_id_header"], "bob@customer.test"), mail_from="")
    [bob] = rows(desk, Participant)
    assert bob.bounced_at is not None


def test_a_bounce_for_a_ticket_merged_away_is_recorded_where_its_participants_went(desk: Desk) -> None:
    ingest(desk, mail())
    ingest(desk, mail("Mine too.", sender="carol@customer.test", message_id="<m2@customer.test>"))
    [_, ack_to_carol] = outbox(desk, "email.send")
    with desk.db.transaction() as session:
        kept, duplicate = session.scalars(select(Ticket).order_by(Ticket.id)).all()
        actions.merge(session, desk.policy, duplicate, kept, Actor("Alice", slack_id="U0ALICE"))
    ingest(desk, dsn(ack_to_carol.payload["message_id_header"], "carol@customer.test"), mail_from="")
    [carol] = rows(desk, Participant, Participant.email == "carol@customer.test")
    assert carol.ticket_id == kept.id and carol.bounced_at is not None
    bounce_line = [row for row in outbox(desk, "slack.thread_line") if "bounced" in row.payload["text"]]
    assert [row.ticket_id for row in bounce_line] == [kept.id]


@pytest.mark.parametrize("key_use", ["bounce", "unsubscribe"])
def test_keys_in_mail_sent_before_a_merge_name_the_participant_where_the_ticket_went(
    desk: Desk, key_use: str
) -> None:
    """Carol was on both tickets: her mail from the merged-away one went out under a key of its own
    (its bounce address, its unsubscribe link), which must still reach her on the ticket kept."""
    ingest(desk, mail(Cc="carol@customer.test"))
    ingest(desk, mail("Mine too.", sender="carol@customer.test", message_id="<m2@customer.test>"))
    [old_key] = [
        p.unsubscribe_key for p in rows(desk, Participant) if p.role == "requester" and "carol" in p.email
    ]
    with desk.db.transaction() as session:
        kept, duplicate = session.scalars(select(Ticket).order_by(Ticket.id)).all()
        actions.merge(session, desk.policy, duplicate, kept, Actor("Alice", slack_id="U0ALICE"))
    prefix = "bounce-" if key_use == "bounce" else "unsub-"
    assert lookup_address_key(desk.db, prefix + old_key) is not KeyKind.UNKNOWN  # accepted at RCPT
    raw = (
        dsn("x@acme.test", "carol@customer.test")
        if key_use == "bounce"
        else mail("stop", message_id="<u@c.test>")
    )
    ingest(desk, raw, mail_from="", rcpt_tos=(f"support+{prefix}{old_key}@acme.test",))
    [carol] = rows(
        desk, Participant, Participant.ticket_id == kept.id, Participant.email == "carol@customer.test"
    )
    assert (carol.bounced_at if key_use == "bounce" else carol.unsubscribed_at) is not None


def staff_reply(desk: Desk, text: str) -> None:
    with desk.db.transaction() as session:
        ticket = session.scalars(select(Ticket)).one()
        actions.add_staff_reply(
            session,
            desk.policy,
            ticket,
            author=Actor("Alice", slack_id="U0ALICE"),
            body_markdown=text,
            slack_channel=None,
            slack_ts=None,
        )


def test_each_copy_references_only_mail_its_reader_has(desk: Desk) -> None:
    """Bob's acknowledgement's Message-ID proves, in a bounce, that mail to Bob failed: Carol's copy
    of a later reply must not show it to her, or she could forge one and cut Bob off."""
    ingest(desk, mail(Cc="carol@customer.test"))
    [ack] = outbox(desk, "email.send")
    staff_reply(desk, "On it.")
    first = {row.payload["to"]: row.payload["message_id_header"] for row in outbox(desk, "email.send")[1:]}
    ingest(desk, mail("Still burning.", message_id="<m2@customer.test>", In_Reply_To="<m1@customer.test>"))
    staff_reply(desk, "Unplug it.")
    copies = {row.payload["to"]: row.payload for row in outbox(desk, "email.send")[3:]}
    bob, carol = first["bob@customer.test"], first["carol@customer.test"]
    assert copies["bob@customer.test"]["references"] == [
        "m1@customer.test",
        ack.payload["message_id_header"],
        bob,
        "m2@customer.test",
    ]
    assert copies["carol@customer.test"]["references"] == ["m1@customer.test", carol, "m2@customer.test"]
    assert {copy["in_reply_to"] for copy in copies.values()} == {"m2@customer.test"}


def test_references_end_with_the_parent_and_name_no_later_mail() -> None:
    """RFC 5322 3.6.4: the parent's ancestors and the parent, oldest first. The acknowledgement
    and earlier answers sent after the customer's mail are its siblings, not its ancestors."""
    thread = MailThread(
        [
            ("m1@c", "received", None),
            ("ack@d", "sent", "bob@c"),
            ("r1@d", "sent", "bob@c"),
        ]
    )
    assert thread.headers_for("bob@c") == ("m1@c", ["m1@c"])


def test_a_delay_notice_is_not_a_bounce(desk: Desk) -> None:
    ingest(desk, mail())
    [bob] = rows(desk, Participant)
    ingest(
        desk,
        dsn("x@acme.test", "bob@customer.test", status="4.4.1", action="delayed"),
        mail_from="",
        rcpt_tos=(f"support+bounce-{bob.unsubscribe_key}@acme.test",),
    )
    [bob] = rows(desk, Participant)
    assert bob.bounced_at is None


def test_a_new_tickets_cc_are_added_without_reading_its_history(desk: Desk) -> None:
    """Who staff removed is looked up for a ticket that has a past, not for one the mail opens."""
    reads: list[str] = []

    def note_history_reads(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "ticket_events" in statement:
            reads.append(statement)

    event.listen(desk.db.engine, "before_cursor_execute", note_history_reads)
    try:
        ingest(desk, mail(Cc="carol@customer.test, dave@customer.test"))
    finally:
        event.remove(desk.db.engine, "before_cursor_execute", note_history_reads)
    assert len(rows(desk, Participant)) == 3 and reads == []


def test_someone_removed_is_named_once_per_removal_however_often_mail_copies_them(desk: Desk) -> None:
    staff = Actor("Alice", slack_id="U0ALICE")
    ingest(desk, mail(Cc="carol@customer.test"))

    def remove_carol() -> None:
        with desk.db.transaction() as session:
            actions.remove_participant(
                session, session.scalars(select(Ticket)).one(), "carol@customer.test", staff
            )

    def reply_all(n: int) -> None:
        to = f"support+{reply_key(desk)}@acme.test"
        ingest(desk, mail(f"Update {n}", message_id=f"<r{n}@customer.test>", to=to, Cc="carol@customer.test"))

    def named() -> int:
        return len([line for line in thread_lines(desk) if "not added back" in line])

    remove_carol()
    reply_all(1)
    reply_all(2)
    assert named() == 1
    with desk.db.transaction() as session:  # staff add her back, and remove her again later
        ticket = session.scalars(select(Ticket)).one()
        actions.add_participant(session, desk.policy, ticket, "carol@customer.test", staff, notify=False)
    remove_carol()
    reply_all(3)
    assert named() == 2
    assert [p.email for p in rows(desk, Participant)] == ["bob@customer.test"]


def test_a_participant_whose_mail_bounced_gets_mail_again_once_they_write_in(desk: Desk) -> None:
    ingest(desk, mail(Cc="carol@customer.test"))
    [carol] = rows(desk, Participant, Participant.email == "carol@customer.test")
    ingest(
        desk,
        dsn("whatever@acme.test", "carol@customer.test", status="5.2.2"),  # her mailbox was full
        mail_from="",
        rcpt_tos=(f"support+bounce-{carol.unsubscribe_key}@acme.test",),
    )
    ingest(
        desk,
        mail("Sorry, my mailbox was full.", sender="carol@customer.test", message_id="<m2@customer.test>"),
        mail_from="carol@customer.test",
        rcpt_tos=(f"support+{reply_key(desk)}@acme.test",),
    )
    [carol] = rows(desk, Participant, Participant.email == "carol@customer.test")
    assert (carol.bounced_at, carol.bounce_reason) == (None, None)
    assert thread_lines(desk)[-1] == "carol@customer.test wrote in again: mail to them goes out again."
    assert [event.kind for event in rows(desk, TicketEvent)].count("bounce_cleared") == 1


def test_a_participant_who_unsubscribed_gets_mail_again_once_they_write_in(desk: Desk) -> None:
    ingest(desk, mail(Cc="carol@customer.test"))
    for participant in rows(desk, Participant):  # both unsubscribe, by the List-Unsubscribe mailto
        ingest(
            desk,
            mail("unsubscribe", sender=participant.email, message_id=f"<u-{participant.id}@customer.test>"),
            rcpt_tos=(f"support+unsub-{participant.unsubscribe_key}@acme.test",),
        )
    # Carol writes again (Bob in Cc): she wants the answer; Bob did not write, so he stays unsubscribed.
    ingest(
        desk,
        mail(
            "One more question.",
            sender="carol@customer.test",
            message_id="<m2@customer.test>",
            Cc="bob@customer.test",
        ),
        mail_from="carol@customer.test",
        rcpt_tos=(f"support+{reply_key(desk)}@acme.test",),
    )
    unsubscribed = {p.email: p.unsubscribed_at is not None for p in rows(desk, Participant)}
    assert unsubscribed == {"bob@customer.test": True, "carol@customer.test": False}
    assert (
        thread_lines(desk)[-1]
        == "carol@customer.test wrote in again after unsubscribing: mail to them goes out again."
    )
    assert [event.kind for event in rows(desk, TicketEvent)].count("unsubscribe_cleared") == 1


def test_without_a_from_header_the_envelope_sender_is_the_requester(desk: Desk) -> None:
    ingest(desk, b"Subject: who am I\r\n\r\nno From header at all\r\n", mail_from="carl@customer.test")
    assert the_ticket(desk).subject == "who am I"
    assert [c.email for c in rows(desk, Customer)] == ["carl@customer.test"]


def test_a_message_without_any_readable_sender_still_reaches_the_desk(desk: Desk) -> None:
    ingest(desk, b"From: ???\r\nSubject: who am I\r\n\r\nno address\r\n", mail_from="not an address")
    assert the_ticket(desk).subject == "who am I"
    assert [(c.email, c.name) for c in rows(desk, Customer)] == [(None, "Unknown sender")]
    assert outbox(desk, "email.send") == []


def test_work_taken_over_by_another_worker_changes_nothing(desk: Desk) -> None:
    raw = mail()
    inbound.accept(desk.db, "email", "email:m1", payload={"mail_from": "", "rcpt_tos": [SUPPORT]}, raw=raw)
    [work] = inbound.claim(desk.db, "w1", lease=timedelta(seconds=-1))
    inbound.claim(desk.db, "w2")  # the lease lapsed: w2 holds it now
    with pytest.raises(LostClaim):
        asyncio.run(EmailIngest(desk).handle(work, "w1"))
    assert rows(desk, Ticket) == []


def test_a_mail_without_readable_text_says_so_instead_of_an_empty_message(desk: Desk) -> None:
    ingest(desk, mail(""))
    [message] = rows(desk, Message)
    assert message.body_markdown == NO_TEXT


@pytest.mark.parametrize(
    ("to", "reply_to", "list_id", "requester"),
    [
        (SUPPORT, "Jane <jane@customer.test>", None, "jane@customer.test"),
        (f"{SUPPORT}, jane@customer.test", "jane@customer.test", None, "jane@customer.test"),  # a copy
        (SUPPORT, "jane@customer.test, joe@customer.test", None, "bob@customer.test"),  # no one person
        (SUPPORT, "support+x@ACME.test", None, "bob@customer.test"),  # ours: a loop
        (f"team@lists.test, {SUPPORT}", "team@lists.test", "<team.lists.test>", "bob@customer.test"),
        (f"team@lists.test, {SUPPORT}", "jane@customer.test", "<team.lists.test>", "jane@customer.test"),
    ],
)
def test_the_requester_is_the_one_reply_to_address_that_is_a_person(
    desk: Desk, to: str, reply_to: str, list_id: str | None, requester: str
) -> None:
    ingest(desk, mail(to=to, Reply_To=reply_to, **({"List_Id": list_id} if list_id else {})))
    with desk.db.transaction() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert session.get(Customer, ticket.requester_id).email == requester  # type: ignore[union-attr]
        [ack] = session.scalars(select(Outbox).where(Outbox.kind == "email.send")).all()
        assert ack.payload["to"] == requester
