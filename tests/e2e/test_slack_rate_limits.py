"""Slack's rate limits against the running service: a method Slack holds back for a while holds back
only what needs that method. An edit mirrored onto a copy (`chat.update`) waiting out a 429 does not
keep the thread's next messages from their readers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sandbox.faults import Fault
from sandbox.state import CallRecord
from sandbox.workspace import ALICE, CONNECT, DAN, TRIAGE
from store.models import Delivery, Outbox, OutboxState, Visibility
from tests.e2e.conftest import StartService
from tests.e2e.test_slack import REPLY_DELAY, Desk, open_ticket, reply_state

pytestmark = pytest.mark.timeout(120)

# Longer than the desk's reply delay, so a reply written after the 429 is due before it ends.
HELD_SECONDS = REPLY_DELAY + 5


@pytest.fixture
def desk(start_service: StartService) -> Desk:
    return Desk(start_service(intake_channels=(CONNECT,), reply_delay_seconds=REPLY_DELAY))


def _update_of(desk: Desk, channel: str, ts: str, status: int) -> CallRecord | None:
    return next(
        (
            call
            for call in desk.emulator.calls_to("chat.update", channel=channel)
            if call.params.get("ts") == ts and call.status == status
        ),
        None,
    )


def _post_of(desk: Desk, channel: str, text: str) -> CallRecord:
    return next(
        call
        for call in desk.emulator.calls_to("chat.postMessage", channel=channel)
        if call.status == 200 and text in str(call.params.get("text") or "")
    )


def _open_rows(desk: Desk) -> list[int]:
    with desk.db.transaction() as session:
        waiting = [OutboxState.PENDING, OutboxState.CLAIMED]
        return list(session.scalars(select(Outbox.id).where(Outbox.state.in_(waiting))))


def _rate_limit_next_update(desk: Desk) -> None:
    """Slack answers the next `chat.update` (nothing else is waiting to be delivered) with a 429."""
    desk.idle()
    desk.wait(lambda: not _open_rows(desk), "every delivery done")
    desk.emulator.add_fault("chat.update", Fault.ratelimited(retry_after=int(HELD_SECONDS)), times=1)


def test_a_customers_edit_held_by_a_rate_limit_does_not_hold_back_their_next_message(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    ts = desk.emulator.user_post(DAN, CONNECT, "The export is empty", thread_ts=customer_ts)
    copy = desk.wait_thread_text(TRIAGE, card_ts, "export is empty")
    _rate_limit_next_update(desk)

    desk.emulator.user_edit(DAN, CONNECT, ts, "The export is empty (v2)")
    desk.wait(lambda: _update_of(desk, TRIAGE, copy.ts, 429), "Slack's 429 on the copy's update")
    desk.emulator.user_post(DAN, CONNECT, "The import fails too", thread_ts=customer_ts)
    desk.wait_thread_text(TRIAGE, card_ts, "import fails too")
    updated = desk.wait(lambda: _update_of(desk, TRIAGE, copy.ts, 200), "the copy updated after Retry-After")

    # The new message went up while the edit waited out Slack's Retry-After, not after it.
    assert _post_of(desk, TRIAGE, "import fails too").time < updated.time
    assert "(v2)" in desk.emulator.message(TRIAGE, copy.ts).text


def test_a_staff_edit_held_by_a_rate_limit_does_not_hold_back_the_next_reply(desk: Desk) -> None:
    customer_ts, card_ts = open_ticket(desk)
    reply_ts = desk.emulator.user_post(ALICE, TRIAGE, "Restart the exporter", thread_ts=card_ts)
    posted = desk.wait_thread_text(CONNECT, customer_ts, "Restart the exporter")
    desk.wait(lambda: reply_state(desk, reply_ts) == (Delivery.DELIVERED, Visibility.PUBLIC))
    _rate_limit_next_update(desk)

    desk.emulator.user_edit(ALICE, TRIAGE, reply_ts, "Restart the exporter twice")
    desk.wait(lambda: _update_of(desk, CONNECT, posted.ts, 429), "Slack's 429 on the copy's update")
    desk.emulator.user_post(ALICE, TRIAGE, "Then send us the log", thread_ts=card_ts)
    desk.wait_thread_text(CONNECT, customer_ts, "send us the log")
    updated = desk.wait(
        lambda: _update_of(desk, CONNECT, posted.ts, 200), "the copy updated after Retry-After"
    )

    # The next reply reached the customer when its undo window ended, not after the edit's wait.
    assert _post_of(desk, CONNECT, "send us the log").time < updated.time
    assert "twice" in desk.emulator.message(CONNECT, posted.ts).text
