"""Staff edits and card presses whose outcome was not what their author would expect, driven
through signed events and card presses into the running service."""

from __future__ import annotations

import pytest

from sandbox.workspace import ALICE, CONNECT, HELP, TRIAGE
from store.models import Visibility
from tests.e2e.conftest import StartService
from tests.e2e.test_slack import REPLY_DELAY, Desk, customer_sees, delivered_marker, open_ticket

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def desk(start_service: StartService) -> Desk:
    return Desk(start_service(intake_channels=(CONNECT, HELP), reply_delay_seconds=REPLY_DELAY))


def test_a_note_edited_into_a_command_stays_a_note_and_its_author_is_told(desk: Desk) -> None:
    """`note: x` edited to `!close`: a note is never run as a command by an edit (it was written
    as a note), so the author, who sees `!close` in the thread and the ticket still open, is told
    it was not run and to type it as a new message."""
    customer_ts, card_ts = open_ticket(desk)
    note_ts = desk.emulator.user_post(ALICE, TRIAGE, "note: closing soon", thread_ts=card_ts)
    desk.wait(lambda: "lock" in desk.reactions(TRIAGE, note_ts), "the note marker")
    desk.idle()
    desk.emulator.user_edit(ALICE, TRIAGE, note_ts, "!close")
    desk.wait(
        lambda: [e for e in desk.emulator.ephemerals(TRIAGE, ALICE) if "new message" in e.text],
        "the author to be told the command was not run",
    )
    delivered_marker(desk, customer_ts, card_ts)
    ticket = desk.ticket(1)
    assert ticket is not None and ticket.status == "open"
    note = desk.message_at(TRIAGE, note_ts)
    assert note is not None and note.visibility == Visibility.INTERNAL
    assert not any("close" in text for text in customer_sees(desk, customer_ts))

