"""EmailDelivery against a real SMTP sink: headers, bodies, attachments, skips and failure outcomes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot import event_loop
from bot.commands.base import lock_tickets
from bot.worker_settle import settle
from mail.delivery import EmailDelivery, check_delivery_settings
from sandbox.mail_sink import MailSink
from store import actions, outbox
from store.actions import Actor, NewAttachment
from store.actions.common import enqueue_emails
from store.context import Desk
from store.db import Database, InvalidRequest
from store.models import Delivery, Message, Origin, Outbox, Participant, Ticket, TicketEvent, utcnow
from store.outbox import Kind, OutboxItem
from store.outcomes import Done, Fail, Retry
from store.settings import Settings, SettingsError
from tests.conftest import POSTGRES_URL, lock_waits
from tests.e2e.conftest import wait_until

SUPPORT = "support@acme.test"
STAFF = Actor("Alice Agent", slack_id="U0ALICE")


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


def make_desk(db: Database, tmp_path: Path, relay_url: str, **overrides: object) -> Desk:
    settings = Settings(
        database_url=db.url,
        support_address=SUPPORT,
        smtp_relay_url=relay_url,
        files_dir=tmp_path / "files",
        triage_channel="C0TRIAGE",
        reply_delay_seconds=0,
        sender_name="ACME Support",
        **overrides,  # type: ignore[arg-type]
    )
    return Desk.build(settings, db)


@pytest.fixture
def desk(db: Database, tmp_path: Path, sink: MailSink) -> Desk:
    return make_desk(db, tmp_path, sink.url, public_url="https://desk.acme.test")


def open_email_ticket(
    desk: Desk,
    *,
    cc: tuple[str, ...] = (),
    requester: str = "bob@customer.test",
    name: str = "Bob Customer",
    subject: str = "Printer on fire",
    with_message: bool = True,
) -> int:
    """A ticket from `requester`, by default with one received message; returns its id."""
    with desk.db.transaction() as session:
        customer = actions.customer_for_email(session, requester, name)
        ticket = actions.open_ticket(
            session,
            desk.policy,
            subject=subject,
            requester=customer,
            origin=Origin.EMAIL,
            actor=Actor(customer.name, email=customer.email),
        )
        if not with_message:
            return ticket.id
        actions.add_customer_message(
            session,
            desk.policy,
            ticket,
            customer=customer,
            body_markdown="It burns.",
            source="email",
            email_message_id="first@customer.test",
        )
        for address in cc:
            actions.add_participant(session, desk.policy, ticket, address, STAFF, notify=False)
        return ticket.id


def email_rows(desk: Desk) -> list[OutboxItem]:
    """Claim every due email row (as the worker would)."""
    return outbox.claim_due(desk.db, "test-worker", kinds=frozenset({Kind.EMAIL.value}))


def perform_all(delivery: EmailDelivery, items: list[OutboxItem]) -> list[object]:
    async def run() -> list[object]:
        try:
            return list(await asyncio.gather(*(delivery.perform(item) for item in items)))
        finally:
            await delivery.close()

    return asyncio.run(run())


def participant(desk: Desk, email: str) -> Participant:
    with desk.db.transaction() as session:
        found = session.scalar(select(Participant).where(Participant.email == email))
        assert found is not None
        return found


def received_one(sink: MailSink) -> tuple[str, list[str], EmailMessage]:
    [mail] = sink.wait_for(1)
    return mail.mail_from, mail.rcpt_tos, mail.message


def test_acknowledgement_has_threading_loop_and_unsubscribe_headers(desk: Desk, sink: MailSink) -> None:
    ticket_id = open_email_ticket(desk)
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        enqueue_emails(session, ticket, desk.policy, template="acknowledgement")
        reply_key = ticket.reply_key
    [item] = email_rows(desk)

    [outcome] = perform_all(EmailDelivery(desk), [item])

    assert isinstance(outcome, Done)
    mail_from, rcpt_tos, message = received_one(sink)
    key = participant(desk, "bob@customer.test").unsubscribe_key
    assert mail_from == f"support+bounce-{key}@acme.test"
    assert rcpt_tos == ["bob@customer.test"]
    assert message["From"] == "ACME Support <support@acme.test>"
    assert message["To"] == "Bob Customer <bob@customer.test>"
    assert message["Reply-To"] == f"support+{reply_key}@acme.test"
    assert message["Message-ID"] == f"<{item.payload['message_id_header']}>"
    assert message["In-Reply-To"] == "<first@customer.test>"
    assert message["References"] == "<first@customer.test>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["List-Unsubscribe"].strip() == (
        f"<https://desk.acme.test/unsubscribe/{key}>, <mailto:support+unsub-{key}@acme.test>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "#1" in message["Subject"]
    assert message.get_content_type() == "multipart/alternative"


def add_reply(desk: Desk, ticket_id: int, body: str, files: tuple[tuple[str, bytes], ...] = ()) -> int:
    attachments = [
        NewAttachment(name, "application/octet-stream", len(data), desk.files.put(data))
        for name, data in files
    ]
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        message = actions.add_staff_reply(
            session,
            desk.policy,
            ticket,
            author=STAFF,
            body_markdown=body,
            slack_channel="C0TRIAGE",
            slack_ts="1700000000.000100",
            attachments=attachments,
            now=utcnow() - timedelta(seconds=1),
        )
        return message.id


def test_staff_reply_is_formatted_threaded_and_attached(desk: Desk, sink: MailSink) -> None:
    ticket_id = open_email_ticket(desk, cc=("carol@customer.test",))
    add_reply(desk, ticket_id, "Try **this**:\n\n- unplug it\n- call `911`", (("notes.txt", b"hello"),))
    items = email_rows(desk)
    assert sorted(item.payload["to"] for item in items) == ["bob@customer.test", "carol@customer.test"]

    outcomes = perform_all(EmailDelivery(desk), items)

    assert all(isinstance(outcome, Done) for outcome in outcomes)
    mails = {mail.rcpt_tos[0]: mail for mail in sink.wait_for(2)}
    message = mails["bob@customer.test"].message
    assert message["Cc"] == "carol@customer.test"
    assert message["Auto-Submitted"] is None
    assert message["In-Reply-To"] == "<first@customer.test>"
    assert message.get_content_type() == "multipart/mixed"
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    assert "<strong>this</strong>" in html.get_content()
    assert "<code" in html.get_content()
    assert "unplug it" in text.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "notes.txt"
    assert attachment.get_content() == b"hello"
    # Each recipient has its own transaction, Message-ID and unsubscribe key.
    carol = mails["carol@customer.test"].message
    assert carol["Message-ID"] != message["Message-ID"]
    assert carol["List-Unsubscribe"] != message["List-Unsubscribe"]


def test_a_participant_with_a_non_ascii_local_part_gets_addresses_a_client_can_read(
    desk: Desk, sink: MailSink
) -> None:
    ticket_id = open_email_ticket(desk, requester="jörg@example.de", name="Jörg", cc=("carol@customer.test",))
    add_reply(desk, ticket_id, "Done.")

    outcomes = perform_all(EmailDelivery(desk), email_rows(desk))

    assert all(isinstance(outcome, Done) for outcome in outcomes)
    mails = {mail.rcpt_tos[0]: mail for mail in sink.wait_for(2)}
    # Jörg's mail travels with SMTPUTF8: his address is raw UTF-8 (RFC 6532), only his name is encoded.
    joerg = mails["jörg@example.de"]
    assert "To: =?utf-8?b?SsO2cmc=?= <jörg@example.de>\r\n".encode() in joerg.raw
    (to,) = joerg.message["To"].addresses
    assert (to.display_name, to.username, to.domain) == ("Jörg", "jörg", "example.de")
    assert [a.addr_spec for a in joerg.message["Cc"].addresses] == ["carol@customer.test"]
    # Carol's mail stays ASCII (no SMTPUTF8): Jörg's address is shown, but is no reply target.
    carol = mails["carol@customer.test"]
    carol.raw.decode("ascii")
    assert [(group.display_name, group.addresses) for group in carol.message["Cc"].groups] == [
        ("jörg@example.de", ())
    ]


def test_files_beyond_ten_megabytes_become_signed_links(desk: Desk, sink: MailSink) -> None:
    ticket_id = open_email_ticket(desk)
    big = b"x" * (10 * 1024 * 1024 + 1)
    add_reply(desk, ticket_id, "Logs attached.", (("small.txt", b"small"), ("huge.log", big)))

    perform_all(EmailDelivery(desk), email_rows(desk))

    _from, _to, message = received_one(sink)
    assert [part.get_filename() for part in message.iter_attachments()] == ["small.txt"]
    text = message.get_body(("plain",))
    assert text is not None
    assert "huge.log" in text.get_content()
    assert "https://desk.acme.test/files/" in text.get_content()
    assert hashlib.sha256(big).hexdigest() not in text.get_content()


def test_a_relay_that_takes_less_than_the_attachments_gets_the_reply_with_links(
    db: Database, tmp_path: Path
) -> None:
    """Postfix's default limit is 10,240,000 bytes; a 9 MB file, within the desk's own budget, is
    over 12 MB once base64-encoded. The relay refuses it at MAIL FROM (552, RFC 1870): the reply goes
    again at once with the file as a link, instead of not at all."""
    with MailSink(data_size_limit=10_240_000) as small_relay:
        desk = make_desk(db, tmp_path, small_relay.url, public_url="https://desk.acme.test")
        ticket_id = open_email_ticket(desk)
        log = b"x" * (9 * 1024 * 1024)
        add_reply(desk, ticket_id, "Here is the log.", (("server.log", log), ("note.txt", b"small")))
        [outcome] = perform_all(EmailDelivery(desk), email_rows(desk))
        assert isinstance(outcome, Done), outcome
        _from, _to, message = received_one(small_relay)
    assert list(message.iter_attachments()) == []  # the second try attaches nothing
    text = message.get_body(("plain",))
    assert text is not None
    assert "server.log" in text.get_content() and "note.txt" in text.get_content()
    assert text.get_content().count("https://desk.acme.test/files/") == 2


def test_a_file_missing_from_the_file_store_is_named_as_not_available(
    desk: Desk, sink: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    """A files folder not shared with the worker, or a file deleted: no dead link, and the text goes out."""
    ticket_id = open_email_ticket(desk)
    message_id = add_reply(desk, ticket_id, "Both attached.", (("gone.txt", b"gone!"), ("here.txt", b"here")))
    desk.files.path_for(hashlib.sha256(b"gone!").hexdigest()).unlink()
    with desk.db.read() as session:
        message = session.get(Message, message_id)
        assert message is not None
        [gone_id] = [a.id for a in message.attachments if a.filename == "gone.txt"]

    with caplog.at_level(logging.WARNING, logger="mail.delivery"):
        [outcome] = perform_all(EmailDelivery(desk), email_rows(desk))

    assert isinstance(outcome, Done)
    _from, _to, mail = received_one(sink)
    assert [(part.get_filename(), part.get_content()) for part in mail.iter_attachments()] == [
        ("here.txt", b"here")
    ]
    text = mail.get_body(("plain",))
    assert text is not None
    assert "Both attached." in text.get_content()
    assert "gone.txt (not available)" in text.get_content()
    assert "too large" not in text.get_content() and "/files/" not in text.get_content()
    assert [getattr(r, "attachment_id", None) for r in caplog.records if r.levelno == logging.WARNING] == [
        gone_id
    ]


def test_blank_lines_inside_a_code_block_survive_in_the_text_part(desk: Desk, sink: MailSink) -> None:
    ticket_id = open_email_ticket(desk)
    add_reply(desk, ticket_id, "Use this:\n\n```\nimport os\n\n\ndef main():\n    pass\n```")

    perform_all(EmailDelivery(desk), email_rows(desk))

    _from, _to, mail = received_one(sink)
    text = mail.get_body(("plain",))
    assert text is not None
    assert "import os\n\n\n    def main():" in text.get_content()


@pytest.mark.parametrize("address", ["ops@[10.0.0.1]", "ops@[ipv6:2001:db8::1]"])
def test_a_participant_at_an_address_literal_gets_the_reply(desk: Desk, sink: MailSink, address: str) -> None:
    # The intake and the store take an RFC 5321 address literal; each reply must reach it too.
    ticket_id = open_email_ticket(desk, cc=(address,))
    message_id = add_reply(desk, ticket_id, "Hello")

    deliver_due_mail(desk)

    mails = {mail.rcpt_tos[0]: mail.message for mail in sink.wait_for(2)}
    assert [a.addr_spec for a in mails[address]["To"].addresses] == [address]
    assert [a.addr_spec for a in mails["bob@customer.test"]["Cc"].addresses] == [address]
    with desk.db.read() as session:
        message = session.get(Message, message_id)
        assert message is not None and message.delivery == Delivery.DELIVERED


@pytest.mark.parametrize(
    "address",
    ["o[ps@customer.test", "ops@[10.0.0.1", "ops@10.0.0.1]", "ops@[10.0.0.1]x", "o\\ps@customer.test"],
)
def test_brackets_outside_an_address_literal_are_no_participant_address(desk: Desk, address: str) -> None:
    # No mail header could carry them: a participant the desk takes is one it can mail.
    ticket_id = open_email_ticket(desk)
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        with pytest.raises(InvalidRequest, match="not an email address"):
            actions.add_participant(session, desk.policy, ticket, address, STAFF, notify=False)


def test_reply_deleted_before_delivery_is_not_sent(desk: Desk, sink: MailSink) -> None:
    ticket_id = open_email_ticket(desk)
    message_id = add_reply(desk, ticket_id, "Oops, wrong ticket")
    items = email_rows(desk)
    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        assert message is not None
        message.deleted_at = utcnow()  # deleted after the undo window, while the row was claimed

    [outcome] = perform_all(EmailDelivery(desk), items)

    assert isinstance(outcome, Done) and "deleted" in outcome.result["skipped"]
    assert sink.messages == []


def test_participant_who_unsubscribed_meanwhile_gets_nothing(desk: Desk, sink: MailSink) -> None:
    ticket_id = open_email_ticket(desk)
    add_reply(desk, ticket_id, "Hello")
    items = email_rows(desk)
    with desk.db.transaction() as session:
        found = session.scalar(select(Participant).where(Participant.ticket_id == ticket_id))
        assert found is not None
        found.unsubscribed_at = utcnow()

    [outcome] = perform_all(EmailDelivery(desk), items)

    assert isinstance(outcome, Done) and "unsubscribed" in outcome.result["skipped"]
    assert sink.messages == []


def test_temporary_refusal_retries_and_permanent_refusal_fails(desk: Desk, sink: MailSink) -> None:
    # Two tickets: one ticket's mails to one person go one at a time, in order.
    ticket_ids = [open_email_ticket(desk), open_email_ticket(desk, with_message=False)]
    with desk.db.transaction() as session:
        for ticket_id in ticket_ids:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            enqueue_emails(session, ticket, desk.policy, template="acknowledgement")
    first, second = email_rows(desk)
    sink.fail_next(1, 451)
    delivery = EmailDelivery(desk)
    [temporary] = perform_all(delivery, [first])
    sink.fail_next(1, 554)
    [permanent] = perform_all(delivery, [second])

    assert isinstance(temporary, Retry) and temporary.error.startswith("451")
    assert isinstance(permanent, Fail) and "554" in permanent.error


def test_unreachable_relay_is_retried(db: Database, tmp_path: Path, sink: MailSink) -> None:
    port = sink.port
    sink.stop()  # nothing listens there now
    desk = make_desk(db, tmp_path, f"smtp://127.0.0.1:{port}")
    ticket_id = open_email_ticket(desk)
    add_reply(desk, ticket_id, "Hello")

    [outcome] = perform_all(EmailDelivery(desk), email_rows(desk))

    assert isinstance(outcome, Retry)


def test_rows_due_together_share_relay_connections(desk: Desk, sink: MailSink) -> None:
    cc = tuple(f"person{n}@customer.test" for n in range(9))
    ticket_id = open_email_ticket(desk, cc=cc)
    add_reply(desk, ticket_id, "To all of you")
    items = email_rows(desk)
    delivery = EmailDelivery(desk)

    outcomes = perform_all(delivery, items)

    assert len(items) == 10 and all(isinstance(outcome, Done) for outcome in outcomes)
    assert len(sink.wait_for(10)) == 10
    assert delivery.pool.opened < len(items)


def test_relay_url_and_templates_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^SERVICEDESK_SMTP_RELAY_URL"):
        check_delivery_settings(Settings(smtp_relay_url="http://relay.example"))
    with pytest.raises(SettingsError, match=r"^SERVICEDESK_TEMPLATES_DIR"):
        check_delivery_settings(Settings(templates_dir=tmp_path / "missing"))
    (tmp_path / "acknowledgement.txt").write_text("Hello $nobody\n")
    with pytest.raises(SettingsError, match="nobody"):
        check_delivery_settings(Settings(templates_dir=tmp_path))
    check_delivery_settings(Settings())


def deliver_due_mail(desk: Desk) -> None:
    """One round of a worker that sends email, settling each row as it would in service."""
    from bot.worker import Worker

    delivery = EmailDelivery(desk)
    worker = Worker(desk.db, {Kind.EMAIL.value: delivery.perform}, {}, worker_id="test-worker")

    async def run() -> None:
        await worker.run_once()
        await delivery.close()

    asyncio.run(run())


def test_receipt_of_a_reply_is_delivered_once_its_mail_is_done(desk: Desk, sink: MailSink) -> None:
    ticket_id = open_email_ticket(desk)
    message_id = add_reply(desk, ticket_id, "Hello")
    deliver_due_mail(desk)

    assert len(sink.wait_for(1)) == 1
    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        assert message is not None and message.delivery == Delivery.DELIVERED
        states = set(session.scalars(select(Outbox.state).where(Outbox.kind == Kind.EMAIL.value)))
        assert states == {"done"}


def test_a_reply_nobody_could_receive_is_not_ticked_as_delivered(desk: Desk, sink: MailSink) -> None:
    """Its only recipient unsubscribed while it waited: the receipt says it failed, and why."""
    ticket_id = open_email_ticket(desk)
    message_id = add_reply(desk, ticket_id, "Hello")
    with desk.db.transaction() as session:
        found = session.scalar(select(Participant).where(Participant.ticket_id == ticket_id))
        assert found is not None
        found.unsubscribed_at = utcnow()
    deliver_due_mail(desk)

    assert sink.messages == []
    with desk.db.transaction() as session:
        message = session.get(Message, message_id)
        assert message is not None and message.delivery == Delivery.FAILED
        assert "nobody could receive it" in (message.delivery_error or "")
        lines = session.scalars(select(Outbox.payload).where(Outbox.kind == Kind.THREAD_LINE.value))
        assert any("Not delivered: nobody could receive it" in line["text"] for line in lines)


def test_a_merge_notice_sends_replies_to_the_ticket_it_went_into(desk: Desk, sink: MailSink) -> None:
    source_id = open_email_ticket(desk)
    with desk.db.transaction() as session:
        customer = actions.customer_for_email(session, "dan@other.test", "Dan")
        target = actions.open_ticket(
            session, desk.policy, subject="Same fire", requester=customer, origin=Origin.EMAIL, actor=STAFF
        )
        source = session.get(Ticket, source_id)
        assert source is not None
        actions.merge(session, desk.policy, source, target, STAFF)
        target_key, target_number = target.reply_key, target.number

    [outcome] = perform_all(EmailDelivery(desk), email_rows(desk))

    assert isinstance(outcome, Done)
    _from, rcpt_tos, message = received_one(sink)
    assert rcpt_tos == ["bob@customer.test"]
    assert message["Reply-To"] == f"support+{target_key}@acme.test"
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",))
    assert text is not None and f"#{target_number}" in text.get_content()


def test_a_participant_added_by_staff_is_told_once(desk: Desk, sink: MailSink) -> None:
    ticket_id = open_email_ticket(desk)
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        actions.add_participant(session, desk.policy, ticket, "erin@customer.test", STAFF)

    [outcome] = perform_all(EmailDelivery(desk), email_rows(desk))

    assert isinstance(outcome, Done)
    _from, rcpt_tos, message = received_one(sink)
    assert rcpt_tos == ["erin@customer.test"]
    assert message["Auto-Submitted"] == "auto-generated"


@pytest.mark.parametrize("run_loop", [asyncio.run, event_loop.run], ids=["asyncio", "serve's loop"])
def test_an_idle_relay_connection_is_closed(
    desk: Desk, sink: MailSink, run_loop: Callable[[Coroutine[Any, Any, tuple[int, int]]], tuple[int, int]]
) -> None:
    # serve's loop is uvloop, whose timers fire a moment early: the idle check must still close it.
    from mail.relay import RelayConfig
    from mail.relay_pool import RelayPool

    pool = RelayPool(RelayConfig.from_url(sink.url), idle_seconds=0.05)

    async def run() -> tuple[int, int]:
        await pool.send("support+bounce-k@acme.test", "bob@customer.test", b"Subject: x\r\n\r\nhi\r\n")
        after_send = pool.idle
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10  # bounds a broken test only
        while pool.idle and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return after_send, pool.idle

    assert run_loop(run()) == (1, 0)
    assert len(sink.wait_for(1)) == 1


def test_mail_for_a_removed_participant_reaches_nobody_else(desk: Desk, sink: MailSink) -> None:
    # Staff cc a wrong address, reply, and remove the address again before the mail goes out. The
    # removed participant's id is free: SQLite gives it to the next participant created, here
    # another customer's on another ticket, who must not receive ticket #1's reply.
    ticket_id = open_email_ticket(desk, cc=("carol@wrong.test",))
    removed_id = participant(desk, "carol@wrong.test").id
    add_reply(desk, ticket_id, "The quote for Bob's company is attached.")
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        actions.remove_participant(session, ticket, "carol@wrong.test", STAFF)
    open_email_ticket(desk, requester="dave@other.test", name="Dave", subject="Unrelated", with_message=False)
    if not desk.db.is_postgresql:
        assert participant(desk, "dave@other.test").id == removed_id  # the id was handed on

    outcomes = perform_all(EmailDelivery(desk), email_rows(desk))

    [mail] = sink.wait_for(1)
    assert mail.rcpt_tos == ["bob@customer.test"]
    skipped = [o.result.get("skipped", "") for o in outcomes if isinstance(o, Done)]
    assert "the recipient is no longer a participant of the ticket" in skipped
    assert len(sink.messages) == 1


def test_a_merge_notice_reaches_a_requester_of_both_tickets(desk: Desk, sink: MailSink) -> None:
    # Bob wrote twice; the merge drops his participant on the duplicate (he is on the target
    # already), and the notice queued for it must still reach him, not whoever gets the freed id.
    target_id = open_email_ticket(desk, with_message=False)
    source_id = open_email_ticket(desk, subject="Printer still on fire", with_message=False)
    with desk.db.transaction() as session:
        source, target = session.get(Ticket, source_id), session.get(Ticket, target_id)
        assert source is not None and target is not None
        actions.merge(session, desk.policy, source, target, STAFF)
        target_key = target.reply_key
    open_email_ticket(desk, requester="eve@rival.test", name="Eve", subject="Hello", with_message=False)

    [outcome] = perform_all(EmailDelivery(desk), email_rows(desk))

    assert isinstance(outcome, Done) and "skipped" not in outcome.result
    _from, rcpt_tos, message = received_one(sink)
    assert rcpt_tos == ["bob@customer.test"]
    assert message["Reply-To"] == f"support+{target_key}@acme.test"
    key = participant(desk, "bob@customer.test").unsubscribe_key
    assert key in str(message["List-Unsubscribe"])


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("first_reply", [True, False], ids=["first reply", "later reply"])
def test_two_copies_of_a_reply_settled_at_once_tick_it_once(
    desk: Desk, sink: MailSink, first_reply: bool
) -> None:
    """PostgreSQL, where two workers settle a reply's two emails (requester and Cc) at the same time:
    the second waits for the first, then sees it done; the receipt turns delivered, and a first
    response is counted once."""
    ticket_id = open_email_ticket(desk, cc=("carol@customer.test",))
    email_rows(desk)  # the acknowledgement, out of the way
    if not first_reply:
        with desk.db.transaction() as session:
            answered = session.get(Ticket, ticket_id)
            assert answered is not None
            answered.first_response_at = utcnow()  # an earlier reply reached them
    message_id = add_reply(desk, ticket_id, "Hello")
    first, second = [row for row in email_rows(desk) if row.message_id == message_id]
    first_settled, first_may_commit = threading.Event(), threading.Event()

    def settle_first() -> None:
        with desk.db.transaction() as session:
            assert outbox.mark_done(session, first.id, "test-worker", {"relay": "250 ok"})
            actions.settle_delivery(session, message_id, reached=True)
            session.flush()
            first_settled.set()
            assert first_may_commit.wait(30)

    def settle_second() -> None:
        assert settle(desk.db, "test-worker", second, Done(result={"relay": "250 ok"})) == "done"

    threads = [threading.Thread(target=settle_first), threading.Thread(target=settle_second)]
    threads[0].start()
    assert first_settled.wait(30)
    threads[1].start()
    # The second settle waits for a lock the first holds (or, wrongly, finishes without it).
    wait_until(lambda: lock_waits(desk.db) > 0 or not threads[1].is_alive(), "the second settle to wait")
    first_may_commit.set()
    for thread in threads:
        thread.join(30)

    with desk.db.read() as session:
        message = session.get(Message, message_id)
        assert message is not None and message.delivery == Delivery.DELIVERED
        kinds = session.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket_id)).all()
    assert kinds.count("first_response") == (1 if first_reply else 0) and kinds.count("delivered") == 1


@pytest.mark.skipif(not POSTGRES_URL, reason="needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("first_reply", [True, False], ids=["first reply", "later reply"])
def test_a_merge_while_a_reply_settles_waits_its_turn(desk: Desk, sink: MailSink, first_reply: bool) -> None:
    """PostgreSQL: `!merge` locks both tickets, then moves the messages; a worker settling a reply
    of one of them locks that ticket before the reply too, so one waits for the other (no deadlock,
    which would undo the settle of a mail already sent)."""
    source_id = open_email_ticket(desk)
    target_id = open_email_ticket(desk, requester="dan@other.test", name="Dan", with_message=False)
    with desk.db.transaction() as session:
        source, target = session.get(Ticket, source_id), session.get(Ticket, target_id)
        assert source is not None and target is not None
        numbers = (source.number, target.number)
        if not first_reply:
            source.first_response_at = utcnow()
    email_rows(desk)  # the acknowledgements, out of the way
    message_id = add_reply(desk, source_id, "Hello")
    [row] = [r for r in email_rows(desk) if r.message_id == message_id]
    tickets_locked, failures = threading.Event(), []

    def merge() -> None:
        try:
            with desk.db.transaction() as session:
                found = lock_tickets(session, list(numbers))  # as `!merge` does
                tickets_locked.set()
                wait_until(lambda: lock_waits(desk.db) > 0, "the settle to wait for the merge")
                actions.merge(session, desk.policy, found[numbers[0]], found[numbers[1]], STAFF)
        except Exception as error:  # a deadlock, reported by the assertion below
            failures.append(f"merge: {error}")

    def settle_the_reply() -> None:
        try:
            settle(desk.db, "test-worker", row, Done(result={"relay": "250 ok"}))
        except Exception as error:  # a deadlock, reported by the assertion below
            failures.append(f"settle: {error}")

    threads = [threading.Thread(target=merge), threading.Thread(target=settle_the_reply)]
    threads[0].start()
    assert tickets_locked.wait(30)
    threads[1].start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    with desk.db.read() as session:
        message = session.get(Message, message_id)
        assert (
            message is not None and message.delivery == Delivery.DELIVERED and message.ticket_id == target_id
        )
