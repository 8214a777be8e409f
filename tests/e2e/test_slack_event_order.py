"""Slack events as Slack sends them, end to end: a deletion told as a tombstone, an edit of a
command that already ran."""

from __future__ import annotations

import pytest

from sandbox.workspace import ALICE, CONNECT, DAN, HELP, TRIAGE
from tests.e2e.conftest import StartService
from tests.e2e.test_slack import REPLY_DELAY, Desk, customer_sees, delivered_marker, open_ticket

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


def test_a_command_edited_afterwards_is_neither_sent_to_the_customer_nor_run_again(desk: Desk) -> None:
    """A `!` command ran when it came in; its author editing it later (dropping the `!`, or fixing
    a typo) must not turn it into a reply the customer gets, nor run it a second time: they are
    told, in the thread, to type it anew."""
    customer_ts, card_ts = open_ticket(desk)
    command_ts = desk.emulator.user_post(ALICE, TRIAGE, "!priority high", thread_ts=card_ts)
    desk.wait(lambda: (t := desk.ticket(1)) is not None and t.priority == "high", "the command to run")
    desk.idle()
    desk.emulator.user_edit(ALICE, TRIAGE, command_ts, "priority high: this customer shouts at us")
    typo_ts = desk.emulator.user_post(ALICE, TRIAGE, "!prority low", thread_ts=card_ts)
    desk.idle()
    desk.emulator.user_edit(ALICE, TRIAGE, typo_ts, "!priority low")
    delivered_marker(desk, customer_ts, card_ts)

    assert not any("shouts" in text for text in customer_sees(desk, customer_ts))
    assert desk.message_at(TRIAGE, command_ts) is None  # never stored as a reply either
    ticket = desk.ticket(1)
    assert ticket is not None and ticket.priority == "high"  # the edited command did not run
    told = [e.text for e in desk.emulator.ephemerals(TRIAGE, ALICE) if "type it as a new message" in e.text]
    assert len(told) == 2, [e.text for e in desk.emulator.ephemerals(TRIAGE, ALICE)]
