"""What a staff reply made of files sends when its files cannot go
with it, and a file taken out of a reply inside the undo window. Driven through the real
interfaces: SMTP into the intake, signed events from the emulator, the mail sink."""

from __future__ import annotations

import os

import pytest

from sandbox.events import message_changed_event
from sandbox.render import message_json
from sandbox.workspace import ALICE, CONNECT, DAN, HELP, TRIAGE
from store.models import Delivery
from tests.e2e.conftest import RunningDesk, StartService
from tests.e2e.test_reply_lifecycle import BOB, email_ticket, mails_to, message_at, plain
from tests.e2e.test_slack import Desk, customer_sees, open_ticket, reply_state

pytestmark = pytest.mark.timeout(120)

# Small enough that a staff member's 10 kB file is not copied (the limit Slack files are held to),
# large enough for the customer's own mail.
LIMIT = 5_000


def settled(service: RunningDesk, ts: str) -> str:
    """The reply's delivery state once it is no longer pending."""

    def state() -> str | None:
        message = message_at(service, ts)
        return message.delivery if message is not None and message.delivery != Delivery.PENDING else None

    return service.wait_for(state, "the reply's delivery to settle")


def test_an_email_reply_whose_only_file_was_not_copied_sends_no_empty_mail(
    start_service: StartService,
) -> None:
    service = start_service(reply_delay_seconds=0.5, max_message_bytes=LIMIT)
    card_ts = email_ticket(service, cc=None)
    before = len(mails_to(service, BOB))
    reply_ts = service.post_as(ALICE, "", thread_ts=card_ts, files=[("big.bin", os.urandom(10_000))])
    service.wait_for_thread_text(card_ts, "big.bin")
    state = settled(service, reply_ts)
    # A reply with nothing left to send is not sent: the customer got no mail holding only a
    # signature, and the reply is not ticked as delivered.
    blank = [m for m in mails_to(service, BOB)[before:] if not plain(m).split("-- \n", 1)[0].strip()]
    assert blank == [], [plain(m) for m in blank]
    assert state == Delivery.FAILED
    assert "x" in service.emulator.message(TRIAGE, reply_ts).reactions


def test_a_slack_reply_whose_only_file_was_not_copied_is_not_ticked_as_delivered(
    start_service: StartService,
) -> None:
    desk = Desk(
        start_service(intake_channels=(CONNECT, HELP), reply_delay_seconds=0.5, max_message_bytes=LIMIT)
    )
    customer_ts, card_ts = open_ticket(desk)
    reply_ts = desk.emulator.user_post(
        ALICE, TRIAGE, "", thread_ts=card_ts, files=[("big.bin", os.urandom(10_000))]
    )
    state = desk.wait(
        lambda: (s := reply_state(desk, reply_ts)) is not None and s[0] != Delivery.PENDING and s[0],
        "the reply's delivery to settle",
    )
    # Nothing reached the customer's thread (the file was never copied), so it must not say delivered.
    assert not [m for m in desk.thread(CONNECT, customer_ts) if m.username == "alice" or m.files]
    assert state == Delivery.FAILED
    assert "white_check_mark" not in desk.reactions(TRIAGE, reply_ts)


def _delete_files_of(service: RunningDesk, ts: str, *, tombstone: bool = False) -> None:
    """The author deletes the file of their message in Slack: the message stays and Slack sends
    `message_changed` without the file, as the emulator's own files.delete does, or (`tombstone`)
    with the file left as a `mode: tombstone` stub, as Slack's clients show "This file was deleted"."""
    emulator = service.emulator
    state = emulator.state
    with state.lock:
        message = state.find_message(TRIAGE, ts)
        assert message is not None
        previous = message_json(state, message)
        gone = list(message.files)
        for file_id in gone:
            state.files[file_id].deleted = True
        message.files = []
        state.changed()
        event = message_changed_event(state, message, previous)
        if tombstone:
            event["message"]["files"] = [{"id": file_id, "mode": "tombstone"} for file_id in gone]
        emulator.dispatcher.emit(event, TRIAGE)


def test_a_file_deleted_from_a_reply_inside_the_delay_is_not_sent(start_service: StartService) -> None:
    """DESIGN: editing a reply inside the delay changes what is sent. Taking its file out is such an
    edit (staff attached the wrong customer's file and caught it in time)."""
    service = start_service(reply_delay_seconds=5.0)
    card_ts = email_ticket(service, cc=None)
    reply_ts = service.post_as(
        ALICE,
        "Here is your invoice",
        thread_ts=card_ts,
        files=[("invoice-other-customer.pdf", b"%PDF secret")],
    )
    service.wait_for(lambda: message_at(service, reply_ts), "the reply in the store")
    _delete_files_of(service, reply_ts)
    [mail] = service.wait_for(
        lambda: [m for m in mails_to(service, BOB) if "Here is your invoice" in plain(m)], "the reply's mail"
    )
    assert [part.get_filename() for part in mail.message.iter_attachments()] == []


def test_a_slack_reply_whose_only_file_is_deleted_inside_the_delay_is_withdrawn(
    start_service: StartService,
) -> None:
    desk = Desk(start_service(intake_channels=(CONNECT, HELP), reply_delay_seconds=5.0))
    customer_ts, card_ts = open_ticket(desk)
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "", thread_ts=card_ts, files=[("wrong.pdf", b"%PDF x")])
    desk.wait(lambda: desk.message_at(TRIAGE, reply_ts), "the reply in the store")
    _delete_files_of(desk.service, reply_ts, tombstone=True)
    state = desk.wait(
        lambda: (s := reply_state(desk, reply_ts)) is not None and s[0] != Delivery.PENDING and s[0],
        "the reply's delivery to settle",
    )
    assert state == Delivery.CANCELLED
    # A later reply reaching the customer shows everything before it was settled.
    desk.emulator.user_post(ALICE, TRIAGE, "Marker reply", thread_ts=card_ts)
    desk.wait_thread_text(CONNECT, customer_ts, "Marker reply")
    assert not [m for m in desk.thread(CONNECT, customer_ts) if m.files]


def test_file_names_in_any_script_reach_the_customer_as_written(service: RunningDesk) -> None:
    """A long non-ASCII file name (150 CJK characters fit the name limit) was written as one RFC 2231
    parameter on a single line of 1,300 characters, past RFC 5322's 998: relays may cut or refuse such a
    line. A name that reads as an RFC 2047 encoded word was written raw in a quoted `filename=`, which
    mail clients (and Python) decode into another name ("=?utf-8?q?invoice?=.pdf" showed as "invoice.pdf").
    Each name now arrives intact, on header lines within the limit."""
    card_ts = email_ticket(service, cc=None)
    japanese = "議事録" * 48 + ".pdf"  # 148 characters, within the 150 a name keeps
    look_alike = "=?utf-8?q?invoice?=.pdf"
    files = [(japanese, b"%PDF minutes"), ("Grüße 😀.txt", b"hello"), (look_alike, b"%PDF invoice")]
    service.post_as(ALICE, "The files you asked for.", thread_ts=card_ts, files=files)
    [mail] = service.wait_for(lambda: mails_to(service, BOB)[1:], "the reply")
    assert max(len(line) for line in mail.raw.split(b"\r\n")) <= 998
    attached = mail.message.iter_attachments()
    received = [(file.get_filename(), file.get_payload(decode=True)) for file in attached]
    assert received == [
        (japanese, b"%PDF minutes"),
        ("Grüße 😀.txt", b"hello"),
        (look_alike, b"%PDF invoice"),
    ]


def test_a_slack_customer_is_told_which_files_the_desk_could_not_take(start_service: StartService) -> None:
    """Staff see in the triage thread why a file was not copied; the customer, who believes support
    has it, is told in their own thread to send it another way, in a follow-up and in a message that
    opens a ticket."""
    desk = Desk(
        start_service(intake_channels=(CONNECT, HELP), reply_delay_seconds=0.5, max_message_bytes=LIMIT)
    )
    customer_ts, card_ts = open_ticket(desk)
    files = [("big <!channel>.bin", os.urandom(10_000)), ("ok.txt", b"fine")]
    desk.emulator.user_post(DAN, CONNECT, "Logs attached", thread_ts=customer_ts, files=files)
    notice = desk.wait_thread_text(CONNECT, customer_ts, "We could not receive")
    assert "big &lt;!channel&gt;.bin" in notice.text and "ok.txt" not in notice.text, notice.text
    assert "send it another way" in notice.text
    desk.wait_thread_text(TRIAGE, card_ts, "is more than the")

    second_ts = desk.emulator.user_post(DAN, CONNECT, "Crash dump", files=[("dump.bin", os.urandom(10_000))])
    notice = desk.wait_thread_text(CONNECT, second_ts, "We could not receive")
    assert "dump.bin" in notice.text
    texts = [m.text for m in desk.thread(CONNECT, second_ts)]
    assert "Ticket #2 opened" in texts[0], texts
    # Told once, in the thread they wrote in, not in every thread of theirs.
    assert len([t for t in customer_sees(desk, customer_ts) if "could not receive" in t]) == 1
