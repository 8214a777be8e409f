"""Staff are the members of the triage channel: cached, refreshed, kept current by membership events."""

from __future__ import annotations

import asyncio

from slack_sdk.web.async_client import AsyncWebClient

from bot.staff import StaffDirectory
from sandbox.faults import Fault
from sandbox.workspace import ALICE, BOB, BOT_TOKEN, CAROL, DAN, TRIAGE
from store.models import SlackUser
from tests.bot.inbound_harness import (  # noqa: F401 (fixtures)
    Intake,
    all_done,
    emulator_fixture,
    intake_fixture,
)


def staff_ids(intake: Intake) -> set[str]:
    with intake.db.transaction() as session:
        return {row.user_id for row in session.query(SlackUser).filter(SlackUser.is_staff.is_(True))}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def directory(intake: Intake, clock: FakeClock) -> StaffDirectory:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=intake.emulator.api_url, retry_handlers=[])
    return StaffDirectory(intake.db, client, TRIAGE, refresh_every=600, clock=clock)


def test_joining_and_leaving_the_triage_channel_changes_who_is_staff(intake: Intake) -> None:
    intake.emulator.user_join(CAROL, TRIAGE)
    intake.run()
    assert CAROL in staff_ids(intake)
    intake.emulator.user_leave(ALICE, TRIAGE)
    intake.run()
    assert ALICE not in staff_ids(intake) and CAROL in staff_ids(intake)
    assert all_done(intake)


def test_the_list_is_read_on_first_use_and_again_after_a_while(intake: Intake) -> None:
    clock = FakeClock()
    staff = directory(intake, clock)
    assert asyncio.run(staff.is_staff(ALICE)) is True
    assert asyncio.run(staff.is_staff(DAN)) is False
    assert len(intake.emulator.calls_to("conversations.members")) == 1
    intake.emulator.workspace.channels[TRIAGE].members.remove(BOB)
    clock.now += 599
    assert asyncio.run(staff.is_staff(BOB)) is True  # not yet refreshed
    clock.now += 1
    assert asyncio.run(staff.is_staff(BOB)) is False
    assert len(intake.emulator.calls_to("conversations.members")) == 2


def test_a_failed_refresh_keeps_the_list(intake: Intake) -> None:
    clock = FakeClock()
    staff = directory(intake, clock)
    assert asyncio.run(staff.refresh()) is True
    intake.emulator.add_fault("conversations.members", Fault.slack_error("internal_error"))
    assert asyncio.run(staff.refresh()) is False
    assert staff_ids(intake) == {ALICE, BOB, "U0BOT"}


def test_someone_new_in_the_triage_channel_is_rechecked_at_once(intake: Intake) -> None:
    clock = FakeClock()
    staff = directory(intake, clock)
    assert asyncio.run(staff.is_staff(CAROL)) is False
    intake.emulator.workspace.channels[TRIAGE].members.append(CAROL)
    clock.now += 31
    assert asyncio.run(staff.recheck(CAROL)) is True
