"""A long staff reply (posted into the customer's Slack thread in two messages)
edited short, then long again: the customer's thread must end up with the whole last text."""

from __future__ import annotations

import pytest

from sandbox.workspace import ALICE, CONNECT, TRIAGE
from store.models import Delivery, Visibility
from tests.e2e.conftest import StartService, message_text
from tests.e2e.test_slack import REPLY_DELAY, Desk, open_ticket, reply_state

pytestmark = pytest.mark.timeout(120)


def long_text(tag: str, paragraphs: int = 12) -> str:
    return "\n\n".join(f"{tag} paragraph {n}: " + "word " * 250 for n in range(paragraphs))  # ~15 kB


def visible_text(desk: Desk, customer_ts: str) -> str:
    return "\n".join(message_text(m) for m in desk.thread(CONNECT, customer_ts))


@pytest.fixture
def desk(start_service: StartService) -> Desk:
    return Desk(start_service(intake_channels=(CONNECT,), reply_delay_seconds=REPLY_DELAY))


def test_a_long_reply_edited_short_then_long_again_shows_all_of_it(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, long_text("v1"), thread_ts=card_ts)
    desk.wait(lambda: reply_state(desk, reply_ts) == (Delivery.DELIVERED, Visibility.PUBLIC), "delivered")
    desk.wait(lambda: "v1 paragraph 11" in visible_text(desk, customer_ts), "both parts")
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "Short now")
    desk.wait(lambda: "v1 paragraph" not in visible_text(desk, customer_ts), "the short edit")
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, long_text("v3"))
    desk.wait(lambda: "v3 paragraph 0" in visible_text(desk, customer_ts), "the long edit")
    desk.idle()
    desk.wait(lambda: len(desk.emulator.calls_to("chat.update")) >= 3 or None, "the updates")
    shown = visible_text(desk, customer_ts)
    assert "v3 paragraph 11" in shown or "longer than this copy can hold" in shown, shown[-300:]
