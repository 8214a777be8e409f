"""The App Home tab of a busy desk, end to end: `app_home_opened` into the running service, the view
it publishes in the Slack emulator (which checks Slack's 100-block limit for views).

The queue sections show 10 tickets each and say how many more there are: with 150 unassigned open
tickets that must be 140 more, as the metrics on the same tab say 150 are unassigned."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import delete

from sandbox.workspace import ALICE, TRIAGE
from store import actions
from store.actions import Actor
from store.models import Origin, Outbox
from tests.e2e.conftest import SUPPORT, RunningDesk

pytestmark = pytest.mark.timeout(180)

TICKETS = 150


def test_home_tab_counts_a_queue_longer_than_it_reads(service: RunningDesk) -> None:
    staff = Actor("alice", slack_id=ALICE)
    with service.db.transaction() as session:
        customer = actions.customer_for_email(session, "dan@globex.example")
        for n in range(TICKETS):
            actions.open_ticket(
                session,
                POLICY,
                subject=f"Queue item {n}",
                requester=customer,
                origin=Origin.STAFF,
                actor=staff,
            )
        # The tickets exist; posting their 150 cards (about one post a second, Slack's
        # per-channel limit) is not what this test is about.
        session.execute(delete(Outbox))
    service.emulator.user_open_home(ALICE)
    view = service.wait_for(lambda: service.emulator.home_view(ALICE), "Alice's home")
    shown = json.dumps(view.body)
    assert "Queue item" in shown
    more = re.findall(r"and (\d+) more", shown)
    # "Your open tickets" is empty; "Unassigned" lists 10 and counts the rest.
    assert more, shown[:500]
    assert int(more[0]) == TICKETS - 10, (
        f"the Unassigned section says {more[0]} more, there are {TICKETS - 10}"
    )


POLICY = actions.DeskPolicy(
    mail_domain=SUPPORT.partition("@")[2], triage_channel=TRIAGE, support_addresses=frozenset({SUPPORT})
)
