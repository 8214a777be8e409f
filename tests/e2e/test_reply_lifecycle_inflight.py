"""A staff reply edited or deleted while its email is in the relay's hands (after the
undo window, before the relay answered DATA). The customer gets the text as it was; the thread must
say so, as it does for an edit or deletion after delivery."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from sandbox.mail_sink import MailSink
from sandbox.workspace import ALICE, TRIAGE
from tests.e2e.conftest import RunningDesk, StartService
from tests.e2e.test_reply_lifecycle import BOB, email_ticket, mails_to, message_at, plain, reactions

pytestmark = pytest.mark.timeout(120)


class HeldSink(MailSink):
    """A relay that, once `hold()` is called, keeps the next DATA unanswered until `release()`."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.entered = threading.Event()
        self.released = threading.Event()

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        self.released.set()

    def _take_failure(self) -> str | None:
        if self.holding:
            self.holding = False
            self.entered.set()
            self.released.wait(30)
        return super()._take_failure()


@pytest.fixture
def mail_sink() -> Iterator[HeldSink]:
    with HeldSink() as running:
        yield running


@pytest.fixture
def desk(start_service: StartService) -> RunningDesk:
    return start_service(reply_delay_seconds=0.5)


def _reply_held_in_the_relay(desk: RunningDesk, text: str) -> tuple[str, str]:
    card_ts = email_ticket(desk, cc=None)
    sink: HeldSink = desk.sink  # type: ignore[assignment]
    sink.hold()
    reply_ts = desk.post_as(ALICE, text, thread_ts=card_ts)
    assert sink.entered.wait(20), "the reply never reached the relay"
    return card_ts, reply_ts


def test_an_edit_while_the_email_is_being_sent_is_reported(desk: RunningDesk) -> None:
    card_ts, reply_ts = _reply_held_in_the_relay(desk, "The refund is 100 EUR")
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "The refund is 10 EUR")
    desk.wait_for(
        lambda: "10 EUR" in (((m := message_at(desk, reply_ts)) and m.body_markdown) or ""), "the edit"
    )
    desk.sink.release()  # type: ignore[attr-defined]
    [mail] = desk.wait_for(lambda: [m for m in mails_to(desk, BOB) if "refund" in plain(m)], "the reply")
    assert "100 EUR" in plain(mail)  # what the customer has
    desk.wait_for(lambda: "white_check_mark" in reactions(desk, reply_ts), "delivered")
    desk.post_as(ALICE, "marker", thread_ts=card_ts)
    desk.wait_for(lambda: [m for m in mails_to(desk, BOB) if "marker" in plain(m)], "the marker")
    assert "earlier text by email" in desk.thread_text(card_ts)


def test_a_deletion_while_the_email_is_being_sent_is_reported(desk: RunningDesk) -> None:
    card_ts, reply_ts = _reply_held_in_the_relay(desk, "Wrong customer's invoice attached")
    desk.emulator.user_delete(ALICE, TRIAGE, reply_ts)
    desk.wait_for(lambda: (m := message_at(desk, reply_ts)) and m.deleted_at, "the deletion")
    desk.sink.release()  # type: ignore[attr-defined]
    desk.wait_for(lambda: [m for m in mails_to(desk, BOB) if "invoice" in plain(m)], "the reply")
    desk.post_as(ALICE, "marker", thread_ts=card_ts)
    desk.wait_for(lambda: [m for m in mails_to(desk, BOB) if "marker" in plain(m)], "the marker")
    text = desk.thread_text(card_ts)
    assert "the customer may have it" in text or "already has it by email" in text, text
