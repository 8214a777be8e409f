"""Slack events as Slack sends them, end to end: a deletion that Slack tells as a tombstone."""

from __future__ import annotations

import pytest

from sandbox.workspace import CONNECT, DAN, HELP, TRIAGE
from tests.e2e.conftest import StartService
from tests.e2e.test_slack import REPLY_DELAY, Desk, open_ticket

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def desk(start_service: StartService) -> Desk:
    return Desk(start_service(intake_channels=(CONNECT, HELP), reply_delay_seconds=REPLY_DELAY))


def test_a_customer_deleting_their_request_is_mirrored_into_the_triage_thread(desk: Desk) -> None:
    """The request always has replies (the acknowledgement at least), so Slack tells of its
    deletion as a `message_changed` whose message is a tombstone posted as Slackbot."""
    customer_ts, card_ts = open_ticket(desk, "Printer is on fire")
    desk.wait_thread_text(TRIAGE, card_ts, "Printer is on fire")

    desk.emulator.user_delete(DAN, CONNECT, customer_ts)

    desk.wait(
        lambda: not any("Printer is on fire" in m.text for m in desk.thread(TRIAGE, card_ts)),
        "the request's copy in the triage thread to be deleted",
    )
    message = desk.message_at(CONNECT, customer_ts)
    assert message is not None and message.deleted_at is not None
    assert desk.ticket_count() == 1
