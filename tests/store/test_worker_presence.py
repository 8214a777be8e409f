"""Workers counting each other, so that each keeps its share of Slack's limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from store import worker_presence
from store.db import Database
from store.models import ServiceState, utcnow
from store.service_state import set_slack_paused, slack_paused

WINDOW = timedelta(seconds=16)
FORGET = timedelta(hours=1)
START = utcnow()


def check_in(db: Database, worker_id: str, seconds: float) -> int:
    now = START + timedelta(seconds=seconds)
    return worker_presence.check_in(db, worker_id, seen_within=WINDOW, forget_after=FORGET, now=now)


def test_workers_are_counted_while_they_check_in(db: Database) -> None:
    assert check_in(db, "host-a:1", 0) == 1
    assert check_in(db, "host-b:2", 1) == 2
    assert check_in(db, "host-a:1", 5) == 2  # checking in again is still one worker
    # host-b stops checking in (it died): after the window it no longer counts.
    assert check_in(db, "host-a:1", 20) == 1
    # One that stops cleanly checks out: the other has the whole limit at its next check-in.
    assert check_in(db, "host-c:3", 21) == 2
    worker_presence.check_out(db, "host-c:3")
    assert check_in(db, "host-a:1", 22) == 1


def test_a_dead_workers_row_is_forgotten_and_other_state_is_left_alone(db: Database) -> None:
    set_slack_paused(db, "token revoked")
    check_in(db, "host-b:2", 0)
    check_in(db, "host-a:1", 3700)
    with db.read() as session:
        keys = session.scalars(select(ServiceState.key)).all()
    assert sorted(key.startswith("worker:") for key in keys) == [False, True]
    assert slack_paused(db) == "token revoked"


def test_workers_judge_each_other_by_the_databases_clock(db: Database) -> None:
    if not db.is_postgresql:
        pytest.skip("needs SERVICEDESK_TEST_DATABASE_URL (PostgreSQL): one worker on SQLite")

    def check_in_now(worker_id: str) -> int:
        return worker_presence.check_in(db, worker_id, seen_within=WINDOW, forget_after=FORGET)

    assert check_in_now("host-a:1") == 1
    # host-b's clock runs an hour ahead: by its own, host-a's row would be long gone.
    with freeze_time(utcnow() + timedelta(hours=1), tick=True):
        assert check_in_now("host-b:2") == 2
    assert check_in_now("host-a:1") == 2
