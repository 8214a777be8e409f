"""A staff reply that failed in the customer's Slack thread, then edited into a note: an operator's
retry of its failed row posts nothing."""

from __future__ import annotations

import pytest

from sandbox.workspace import ALICE, CONNECT, TRIAGE
from store.models import Delivery, Visibility
from tests.e2e.conftest import StartService
from tests.e2e.test_slack import Desk, open_ticket, reply_state, retry_the_failed_customer_thread_post

pytestmark = pytest.mark.timeout(120)

WINDOW = 2.0


@pytest.fixture
def desk(start_service: StartService) -> Desk:
    return Desk(start_service(intake_channels=(CONNECT,), reply_delay_seconds=WINDOW))


def test_a_reply_that_failed_in_slack_edited_into_a_note_is_never_posted(desk: Desk) -> None:
    """The Slack side of `test_a_failed_reply_edited_into_a_note_becomes_one`: the bot was out of
    the customer's channel, the reply failed (❌); staff make it a note; the operator, having invited
    the bot back, sends the failed row again: nothing reaches the customer."""
    from sandbox.workspace import BOT_USER
    from store.models import OutboxState

    customer_ts, card_ts = open_ticket(desk)
    desk.idle()
    desk.emulator.user_leave(BOT_USER, CONNECT)
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "Their account is on the watch list", thread_ts=card_ts)
    desk.wait(lambda: "x" in desk.reactions(TRIAGE, reply_ts), "the failed receipt")
    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "note: their account is on the watch list")
    desk.wait(lambda: "lock" in desk.reactions(TRIAGE, reply_ts), "the note marker")
    assert reply_state(desk, reply_ts) == (Delivery.CANCELLED, Visibility.INTERNAL)
    row_id = retry_the_failed_customer_thread_post(desk)
    desk.wait(
        lambda: desk.db and _state(desk, row_id) in (OutboxState.DONE, OutboxState.CANCELLED),
        "the retried row done",
    )
    assert not any("watch list" in m.text for m in desk.thread(CONNECT, customer_ts))
    assert "x" not in desk.reactions(TRIAGE, reply_ts)


def _state(desk: Desk, row_id: int) -> str | None:
    from sqlalchemy import select

    from store.models import Outbox

    with desk.db.read() as session:
        return session.scalar(select(Outbox.state).where(Outbox.id == row_id))
