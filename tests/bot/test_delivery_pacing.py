"""A flood against an emulator that enforces Slack's limits (1 post a second per channel, burst 3,
300 a minute per workspace): the worker keeps to the limit instead of collecting 429s, and what
Slack does refuse is retried after Retry-After without losing or repeating anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.delivery import SlackDelivery
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import TRIAGE
from store.models import OutboxState
from tests.bot.delivery_kit import (  # noqa: F401 (fixtures)
    client_for,
    desk_for,
    emulator_fixture,
    open_email_ticket,
    posts_by_row,
    rows,
    run_until_drained,
    worker_for,
)

TICKETS = 5  # ten posts into the triage channel: a burst of three, then one a second


@pytest.mark.parametrize("pacing", [True, False], ids=["paced", "unpaced"])
def test_a_flood_into_one_channel_keeps_to_slacks_limit(
    database_url: str, emulator: SlackEmulator, tmp_path: Path, pacing: bool
) -> None:
    emulator.rate_limits(enabled=True)
    desk = desk_for(database_url, emulator, tmp_path / "files", slack_pacing=pacing)
    for n in range(TICKETS):
        open_email_ticket(desk, subject=f"Request {n}")
    delivery = SlackDelivery(desk, client_for(emulator))
    run_until_drained(worker_for(desk, delivery.performers()), desk.db)

    posts = emulator.calls_to("chat.postMessage", channel=TRIAGE)
    refused = [call for call in posts if call.status == 429]
    print(f"\n429s {'paced' if pacing else 'unpaced'}: {len(refused)} of {len(posts)} calls")
    if pacing:
        # The gate waits for each slot. A stall of the machine can still bunch two requests up
        # on the way to Slack (and Slack then answers one 429), but never a storm.
        assert len(refused) <= 1
    else:
        assert len(refused) >= 3  # Slack pushes back; the outbox still gets everything through
    assert {row.state for row in rows(desk.db)} == {OutboxState.DONE}
    assert sorted(posts_by_row(emulator).values()) == [1] * (2 * TICKETS)
