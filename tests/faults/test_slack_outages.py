"""Slack misbehaving while the worker drains: rate limits on one channel and server errors on another
(everything arrives once), and a revoked token (paused, rows kept, resumed when it works again)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.delivery import SlackDelivery
from bot.http import build_web_app
from bot.worker import Worker, WorkerConfig
from bot.worker_ids import local_prefix
from sandbox.faults import Fault
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import CONNECT, HELP, TRIAGE
from store import outbox
from store.context import Desk
from store.models import OutboxState
from store.outbox import Kind
from store.service_state import slack_paused
from tests.bot.delivery_kit import client_for, desk_for
from tests.faults.kit import WAIT_SECONDS, Figures, duplicates_and_losses, fill, states

CONFIG = WorkerConfig(pause_check_interval=0.5, pause_state_interval=0.1, max_idle_sleep=0.1)


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as running:
        yield running


@pytest.fixture
def desk(database_url: str, emulator: SlackEmulator, tmp_path: Path) -> Desk:
    return desk_for(database_url, emulator, tmp_path / "files")


def slack_worker(desk: Desk, emulator: SlackEmulator) -> Worker:
    delivery = SlackDelivery(desk, client_for(emulator, timeout=5))
    return Worker(desk.db, delivery.performers(), {}, token_check=delivery.token_works, config=CONFIG)


async def until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def drained(desk: Desk) -> bool:
    counted = states(desk.db)
    return not counted[OutboxState.PENDING] and not counted[OutboxState.CLAIMED]


def test_rate_limits_and_server_errors_deliver_everything_once(desk: Desk, emulator: SlackEmulator) -> None:
    fill(desk, emulator, 36, lines=2, slack_every=2)
    rows = sum(states(desk.db).values())
    # One customer channel is rate limited over and over, the other answers 503 and then drops
    # connections after posting.
    emulator.add_fault("chat.postMessage", Fault.ratelimited(retry_after=1), channel=CONNECT, times=6)
    emulator.add_fault("chat.postMessage", Fault.server_error(503), channel=HELP, times=6)
    emulator.add_fault("chat.postMessage", Fault.reset_after_effect(), channel=HELP, times=3)
    worker = slack_worker(desk, emulator)

    async def run() -> float:
        started = time.monotonic()
        task = asyncio.create_task(worker.run())
        await until(lambda: drained(desk), "the outbox to drain")
        seconds = time.monotonic() - started
        worker.stop()
        await task
        return seconds

    seconds = asyncio.run(run())
    duplicates, losses = duplicates_and_losses(desk.db, emulator)
    statuses = [call.status for call in emulator.calls if call.method in ("chat.postMessage", "chat.update")]
    Figures(
        "429 on one channel, 5xx on another",
        rows,
        duplicates,
        losses,
        seconds,
        note=f"429s={statuses.count(429)} 5xx={statuses.count(503)} resets={statuses.count(0)}",
    ).report()
    assert statuses.count(429) == 6 and statuses.count(503) == 6 and statuses.count(0) == 3
    assert (duplicates, losses) == (0, 0)
    assert states(desk.db) == {OutboxState.DONE: rows}


def test_a_revoked_token_pauses_delivery_keeps_rows_and_resumes(
    desk: Desk, emulator: SlackEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    fill(desk, emulator, 12, lines=1)
    rows = sum(states(desk.db).values())
    emulator.add_fault("*", Fault.slack_error("token_revoked"), times=None)
    worker = slack_worker(desk, emulator)

    async def run() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with TestClient(TestServer(build_web_app(desk.db, None))) as http:
            task = asyncio.create_task(worker.run())
            await until(lambda: slack_paused(desk.db) is not None, "the pause")
            await asyncio.sleep(1.0)  # paused for a while: auth.test is asked, nothing is posted
            seen["healthz_paused"] = await (await http.get("/healthz")).json()
            seen["during"] = states(desk.db)
            posts_during = len(emulator.calls_to("chat.postMessage"))
            await asyncio.sleep(1.0)
            seen["posts_while_paused"] = len(emulator.calls_to("chat.postMessage")) - posts_during
            seen["auth_checks"] = len(emulator.calls_to("auth.test"))
            started = time.monotonic()
            emulator.clear_faults()  # the token works again (a reinstall, a new token)
            await until(lambda: drained(desk), "the outbox to drain")
            seen["seconds"] = time.monotonic() - started
            seen["healthz_after"] = await (await http.get("/healthz")).json()
            worker.stop()
            await task
        return seen

    with caplog.at_level(logging.INFO, logger="bot.worker"):
        seen = asyncio.run(run())
    duplicates, losses = duplicates_and_losses(desk.db, emulator)
    Figures(
        "token revoked, then working again",
        rows,
        duplicates,
        losses,
        seen["seconds"],
        note=f"auth.test checks while paused={seen['auth_checks']}",
    ).report()
    assert seen["healthz_paused"]["slack_delivery"] == "paused: Slack rejected the bot token (token_revoked)"
    assert seen["during"][OutboxState.FAILED] == 0 and seen["during"][OutboxState.PENDING] > 0
    assert seen["posts_while_paused"] == 0 and seen["auth_checks"] >= 1
    assert seen["healthz_after"]["slack_delivery"] == "ok"
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("Slack delivery paused") for m in messages) == 1  # logged once
    assert "Slack token works again; Slack delivery resumes" in messages
    assert (duplicates, losses) == (0, 0)
    assert states(desk.db) == {OutboxState.DONE: rows}


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_post_cut_off_mid_call_is_posted_once_after_a_restart(
    desk: Desk, emulator: SlackEmulator, how: str
) -> None:
    """Slack answers a card's post late; the worker stops (or dies) before the answer. Slack still
    carries the post out after the connection is gone, so the next worker must not look for it,
    find nothing yet and post a second card: a row given back mid-call waits out that late effect."""
    hang = 1.5
    fill(desk, emulator, 1, lines=0, slack_every=0)  # one email ticket: its card goes first
    emulator.add_fault("chat.postMessage", Fault.hang(hang), times=1)
    config = replace(CONFIG, drain_timeout=0.1, slack_settles_in=timedelta(seconds=hang * 2))

    def worker() -> Worker:
        performers = SlackDelivery(desk, client_for(emulator, timeout=5)).performers()
        return Worker(desk.db, performers, {}, config=config)

    def reached_slack() -> bool:
        return not emulator.faults.rules()  # the one-time rule is used up: the post hangs in Slack

    async def stopped_mid_call() -> None:
        first = worker()
        task = asyncio.create_task(first.run())
        await until(reached_slack, "the post to reach Slack")
        first.stop()
        await task

    async def killed_mid_call() -> None:
        # A worker of this machine whose process is gone holds the row, its call cut off.
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()  # reaped: its pid names no running process
        dead_id = f"{local_prefix()}{gone.pid}"
        [card] = outbox.claim_due(desk.db, dead_id, lease=timedelta(hours=1), kinds=frozenset({Kind.CARD}))
        post = SlackDelivery(desk, client_for(emulator, timeout=5)).performers()[Kind.CARD]
        call = asyncio.ensure_future(post(card))
        await until(reached_slack, "the post to reach Slack")
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)

    asyncio.run(stopped_mid_call() if how == "stopped" else killed_mid_call())
    second = worker()

    async def run_again() -> None:
        task = asyncio.create_task(second.run())
        await until(lambda: drained(desk), "the outbox to drain")
        second.stop()
        await task

    asyncio.run(run_again())
    time.sleep(hang)  # the cut-off post has landed by now, so a second card would show
    assert duplicates_and_losses(desk.db, emulator) == (0, 0)
    assert len([m for m in emulator.messages(TRIAGE) if m.bot_id]) == 1
