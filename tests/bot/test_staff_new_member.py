"""A person new in the triage channel, whose `member_joined_channel` the desk never got
(Slack gives up on an event after three tries, e.g. while the desk was down), is staff.

docs/slack.md §4: "someone not known as staff who writes in a triage thread (or runs a command)
triggers a re-read, at most every 30 seconds". `/desk` and a triage-thread message re-read the
list, but the "Create ticket" shortcut and the `ticket` reaction only look at the cached list:
the new team member is told "Only support staff (members of the triage channel) can turn messages
into tickets." — while being a member of the triage channel — and their `ticket` emoji does
nothing, until the periodic refresh (10 minutes) happens to run.
"""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.inbound import SlackEventHandler
from bot.staff import StaffDirectory
from sandbox.workspace import ALICE, BOT_TOKEN, BOT_USER, CAROL, CONNECT, DAN, EMPTY, HELP, TRIAGE
from tests.bot.inbound_harness import (  # noqa: F401 (fixtures)
    Intake,
    all_done,
    emulator_fixture,
    intake_fixture,
)
from tests.bot.test_staff import FakeClock


def handler_with_clock(intake: Intake, clock: FakeClock) -> SlackEventHandler:
    """The real handler, its staff list on an injected clock (so 'a while later' needs no sleep)."""
    handler = intake.handler()
    client = AsyncWebClient(token=BOT_TOKEN, base_url=intake.emulator.api_url, retry_handlers=[])
    handler.context.staff = StaffDirectory(intake.db, client, TRIAGE, clock=clock)
    return handler


def joins_unseen(intake: Intake, user: str) -> None:
    """`user` joins the triage channel; the desk never gets the event."""
    intake.emulator.workspace.channels[TRIAGE].members.append(user)


def setup(intake: Intake) -> tuple[SlackEventHandler, FakeClock]:
    clock = FakeClock()
    handler = handler_with_clock(intake, clock)
    intake.emulator.user_post(DAN, CONNECT, "Printer broken")
    intake.run(handler)  # the staff list is read here: Carol is not in the channel yet
    assert len(intake.tickets()) == 1
    joins_unseen(intake, CAROL)
    clock.now += 60  # a minute later: past the 30 s re-read limit, well before the 10 min refresh
    return handler, clock


def test_a_new_team_member_can_use_the_create_ticket_shortcut(intake: Intake) -> None:
    handler, _clock = setup(intake)
    root = intake.emulator.user_post(ALICE, HELP, "The printers get replaced today")
    intake.run(handler)
    interaction = intake.emulator.user_shortcut(CAROL, HELP, root)
    intake.store(interaction.payload)
    intake.run(handler)
    assert [e.text for e in intake.emulator.ephemerals(user=CAROL)] == ["Opened ticket #2."]
    assert len(intake.tickets()) == 2
    assert all_done(intake)


def test_a_new_team_members_ticket_emoji_opens_a_ticket(intake: Intake) -> None:
    handler, _clock = setup(intake)
    intake.emulator.workspace.channels[EMPTY].members.append(BOT_USER)
    ts = intake.emulator.user_post(ALICE, EMPTY, "The wifi in room 4 is down")
    intake.emulator.user_react(CAROL, EMPTY, ts, "ticket")
    intake.run(handler)
    assert len(intake.tickets()) == 2
    assert all_done(intake)


def test_a_new_team_member_gets_the_queue_on_the_home_tab(intake: Intake) -> None:
    handler, _clock = setup(intake)
    intake.emulator.user_open_home(CAROL)
    intake.run(handler)
    view = intake.emulator.home_view(CAROL)
    assert view is not None
    shown = str(view.body)
    assert "Printer broken" in shown  # the queue, with ticket #1
    assert "to the members of the triage channel" not in shown  # not the outsider's line
