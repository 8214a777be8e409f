"""A member_left_channel handled while a staff-list refresh is in flight must win.

The refresh (`conversations.members`) is answered by Slack *before* Bob leaves, but its answer is
written to the store *after* the worker handled Bob's `member_left_channel`. The stale answer must
not make Bob staff again: DESIGN.md — "Only staff may run triage commands ... anyone else gets a
polite refusal", and a user who left the triage channel is no longer staff. With the stale list
written back, Bob stays staff (no recheck happens for someone already staff) until the next
periodic refresh, 10 minutes later: his triage-thread messages go to customers as public replies
and his `/desk` commands run.

The same race the other way drops a member who just joined.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.staff import StaffDirectory
from sandbox.workspace import ALICE, BOB, BOT_TOKEN, CAROL, TRIAGE
from tests.bot.inbound_harness import (  # noqa: F401 (fixtures)
    Intake,
    all_done,
    emulator_fixture,
    intake_fixture,
)
from tests.bot.test_staff import FakeClock, staff_ids


class AnswerInFlight(AsyncWebClient):
    """The real slack_sdk client against the emulator; `conversations.members`' answer, once
    Slack has produced it, is held "on the wire" until the test lets it through (network latency)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answered = threading.Event()
        self.release = threading.Event()

    async def conversations_members(self, **kwargs: Any) -> Any:
        answer = await super().conversations_members(**kwargs)
        self.answered.set()
        await asyncio.to_thread(self.release.wait, 20)
        return answer


def _directory(intake: Intake) -> tuple[StaffDirectory, AnswerInFlight]:
    # The list as a running desk has it: read once already (the race is a later, periodic refresh).
    plain = AsyncWebClient(token=BOT_TOKEN, base_url=intake.emulator.api_url, retry_handlers=[])
    assert asyncio.run(StaffDirectory(intake.db, plain, TRIAGE).refresh()) is True
    assert BOB in staff_ids(intake) and CAROL not in staff_ids(intake)
    client = AnswerInFlight(token=BOT_TOKEN, base_url=intake.emulator.api_url, retry_handlers=[])
    return StaffDirectory(intake.db, client, TRIAGE, refresh_every=600, clock=FakeClock()), client


def _race(intake: Intake, staff: StaffDirectory, client: AnswerInFlight, change: Any) -> None:
    async def story() -> None:
        refreshing = asyncio.ensure_future(staff.refresh())
        assert await asyncio.to_thread(client.answered.wait, 20)
        # Slack has answered with the old membership; now the channel changes and the worker
        # handles the membership event (the real handler, through the real worker loop).
        change()
        await asyncio.to_thread(intake.run)
        client.release.set()
        assert await refreshing is True

    asyncio.run(story())


def test_someone_who_left_during_a_refresh_is_not_staff_again(intake: Intake) -> None:
    staff, client = _directory(intake)
    _race(intake, staff, client, lambda: intake.emulator.user_leave(BOB, TRIAGE))
    assert all_done(intake)
    assert BOB not in staff_ids(intake)
    # And for the process whose refresh it was: he is not staff, also after a recheck.
    assert asyncio.run(staff.recheck(BOB)) is False


def test_someone_who_joined_during_a_refresh_stays_staff(intake: Intake) -> None:
    staff, client = _directory(intake)
    _race(intake, staff, client, lambda: intake.emulator.user_join(CAROL, TRIAGE))
    assert all_done(intake)
    assert {ALICE, CAROL} <= staff_ids(intake)
