"""The App Home of someone who leaves the triage channel.

bot/blocks/home.py promises that "a view published while they were staff must not stay on their
tab", and bot/home.py that "someone who left the triage channel must not keep the queue they last
saw". The tab is only published on `app_home_opened`, and Slack shows the last published view the
moment the tab is opened (the event comes after): a person taken out of the triage channel still
has the queue — ticket subjects and requesters — on their tab, and sees it again the next time they
open it. The `member_left_channel` of the triage channel is the moment to take it down.
"""

from __future__ import annotations

import json

import pytest

from sandbox.faults import Fault
from sandbox.workspace import BOB, CONNECT, HELP, TRIAGE
from tests.e2e.conftest import StartService
from tests.e2e.test_slack import Desk, open_ticket

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def desk(start_service: StartService) -> Desk:
    return Desk(start_service(intake_channels=(CONNECT, HELP)))


def tab_text(desk: Desk, user: str) -> str:
    view = desk.emulator.home_view(user)
    return json.dumps(view.body) if view is not None else ""


def test_leaving_the_triage_channel_takes_the_queue_off_the_home_tab(desk: Desk) -> None:
    open_ticket(desk, "Secret project printer is down")
    desk.idle()
    desk.emulator.user_open_home(BOB)
    desk.wait(lambda: "Secret project printer" in tab_text(desk, BOB) or None, "Bob's queue on his tab")
    publishes = len(desk.emulator.calls_to("views.publish"))

    desk.emulator.user_leave(BOB, TRIAGE)
    desk.idle()
    desk.wait(
        lambda: len(desk.emulator.calls_to("views.publish")) > publishes or None,
        "Bob's tab published again after he left the triage channel",
    )
    assert "Secret project printer" not in tab_text(desk, BOB)


def test_a_home_slack_failed_to_publish_as_someone_left_is_published_again(desk: Desk) -> None:
    """The publish that takes the queue off the tab of someone who left the triage channel met a
    Slack 503 (or a 429, or no answer): it was not tried again, and the queue stayed on their tab —
    ticket subjects and requesters for someone no longer staff — until they opened it again."""
    open_ticket(desk, "Secret project printer is down")
    desk.idle()
    desk.emulator.user_open_home(BOB)
    desk.wait(lambda: "Secret project printer" in tab_text(desk, BOB) or None, "Bob's queue on his tab")

    desk.emulator.add_fault("views.publish", Fault.server_error(503), times=1)
    desk.emulator.add_fault("views.publish", Fault.ratelimited(retry_after=1), times=1)
    desk.emulator.user_leave(BOB, TRIAGE)
    desk.idle()
    desk.wait(
        lambda: "Secret project printer" not in tab_text(desk, BOB) or None,
        "the queue taken off Bob's tab despite Slack's failures",
    )
    assert not desk.emulator.faults.rules()
