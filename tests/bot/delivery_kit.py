"""Shared pieces of the delivery tests: the emulator, a desk pointed at it, stories that fill the
outbox through the real store actions, and a loop that performs rows until the outbox is empty."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.app import web_client
from bot.delivery.attempt import METADATA_EVENT
from bot.worker import Worker, WorkerConfig
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import ALICE, BOT_TOKEN, CONNECT, DAN, TRIAGE
from store import actions
from store.actions import Actor, NewAttachment
from store.context import Desk
from store.db import Database
from store.models import Origin, Outbox, OutboxState, Ticket
from store.settings import Settings

STAFF = Actor("Alice Archer", slack_id=ALICE)


# Fixtures: a test module imports them by name (as the inbound tests do from inbound_harness).


@pytest.fixture(name="emulator")
def emulator_fixture() -> Iterator[SlackEmulator]:
    with SlackEmulator() as running:
        yield running


@pytest.fixture(name="desk")
def desk_fixture(database_url: str, emulator: SlackEmulator, tmp_path: Path) -> Desk:
    return desk_for(database_url, emulator, tmp_path / "files")


def desk_for(database_url: str, emulator: SlackEmulator, files_dir: Path, **settings: Any) -> Desk:
    values: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN,
        "slack_api_url": emulator.api_url,
        "database_url": database_url,
        "triage_channel": TRIAGE,
        "files_dir": files_dir,
        "support_address": "support@acme.example",
        "reply_delay_seconds": 0,
        # The emulator enforces no limits unless a test turns them on; tests of pacing turn it on.
        "slack_pacing": False,
        **settings,
    }
    return Desk.build(Settings(**values), db=Database(database_url))


def client_for(emulator: SlackEmulator, *, timeout: int = 15) -> AsyncWebClient:
    # The product's own client (bot.app.web_client, which slack_client uses): a test of double posts
    # after a connection reset then fails if slack_sdk's retries are ever turned back on.
    return web_client(BOT_TOKEN, emulator.api_url, timeout=timeout)


# ----- stories through the store's actions -----


def open_email_ticket(
    desk: Desk,
    subject: str = "Printer on fire",
    body: str = "It **burns**.",
    *,
    email: str = "dan@globex.example",
    attachments: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
) -> int:
    stored = [
        NewAttachment(
            filename=name,
            content_type="application/octet-stream",
            size=len(data),
            sha256=desk.files.put(data),
        )
        for name, data in attachments
    ]
    with desk.db.transaction() as session:
        customer = actions.customer_for_email(session, email, "Dan Dorsey")
        ticket = actions.open_ticket(
            session,
            desk.policy,
            subject=subject,
            requester=customer,
            origin=Origin.EMAIL,
            actor=Actor("Dan Dorsey", email=email),
        )
        actions.add_customer_message(
            session,
            desk.policy,
            ticket,
            customer=customer,
            body_markdown=body,
            source="email",
            attachments=stored,
        )
        return ticket.id


def open_slack_ticket(
    desk: Desk, emulator: SlackEmulator, text: str = "VPN is down", channel: str = CONNECT, user: str = DAN
) -> int:
    """A customer's Slack message that opened a ticket (the listener's part, done directly)."""
    ts = emulator.user_post(user, channel, text)
    person = emulator.workspace.users[user]
    with desk.db.transaction() as session:
        customer = actions.customer_for_slack_user(
            session,
            user,
            name=person.real_name,
            team_id=person.team_id,
            home_team_id=emulator.workspace.home.id,
            team_name=emulator.workspace.teams[person.team_id].name,
        )
        ticket = actions.open_ticket(
            session,
            desk.policy,
            subject=text,
            requester=customer,
            origin=Origin.SLACK,
            actor=Actor(person.real_name, slack_id=user),
            origin_channel=channel,
            origin_thread_ts=ts,
        )
        actions.add_customer_message(
            session,
            desk.policy,
            ticket,
            customer=customer,
            body_markdown=text,
            source="slack",
            slack_channel=channel,
            slack_ts=ts,
        )
        return ticket.id


def staff_reply(
    desk: Desk,
    ticket_id: int,
    body: str,
    *,
    slack_ts: str | None = None,
    attachments: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
) -> int:
    stored = [
        NewAttachment(filename=name, content_type="text/plain", size=len(data), sha256=desk.files.put(data))
        for name, data in attachments
    ]
    with desk.db.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        message = actions.add_staff_reply(
            session,
            desk.policy,
            ticket,
            author=STAFF,
            body_markdown=body,
            slack_channel=TRIAGE if slack_ts else None,
            slack_ts=slack_ts,
            attachments=stored,
        )
        return message.id


# ----- performing -----


def worker_for(desk: Desk, performers: dict[str, Any], **config: Any) -> Worker:
    settings = {"lease": timedelta(seconds=30), "pause_state_interval": 0.0, **config}
    return Worker(desk.db, performers, {}, worker_id="test-worker", config=WorkerConfig(**settings))


def run_until_drained(worker: Worker, db: Database, *, timeout: float = 60.0) -> None:
    """The real loop (`Worker.run`) until the outbox is empty, then a clean stop."""

    async def run() -> None:
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        try:
            while await asyncio.to_thread(open_rows, db):
                if time.monotonic() > deadline or task.done():
                    raise TimeoutError(f"outbox not drained: {describe_open(db)}")
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await task

    asyncio.run(run())


def describe_open(db: Database) -> list[tuple[int, str, str, str | None]]:
    return [(r.id, r.kind, r.state, r.last_error) for r in open_rows(db)]


def open_rows(db: Database) -> list[Outbox]:
    with db.transaction() as session:
        return list(
            session.scalars(
                select(Outbox)
                .where(Outbox.state.in_([OutboxState.PENDING, OutboxState.CLAIMED]))
                .order_by(Outbox.id)
            )
        )


def drain(worker: Worker, db: Database, *, timeout: float = 30.0) -> None:
    """Pass after pass until nothing is pending (rows deferred into the future are waited for)."""

    async def run() -> None:
        deadline = time.monotonic() + timeout
        while open_rows(db):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"outbox not drained: {[(r.id, r.kind, r.last_error) for r in open_rows(db)]}"
                )
            if not await worker.run_once():
                await asyncio.sleep(0.05)

    asyncio.run(run())


def rows(db: Database, kind: str | None = None) -> list[Outbox]:
    with db.transaction() as session:
        query = select(Outbox).order_by(Outbox.id)
        if kind is not None:
            query = query.where(Outbox.kind == kind)
        return list(session.scalars(query))


# ----- reading the emulator -----


def posts_by_row(emulator: SlackEmulator) -> Counter[tuple[int, int]]:
    """How many live messages carry each (outbox row, part) delivery metadata, in every channel."""
    found: Counter[tuple[int, int]] = Counter()
    with emulator.state.lock:
        for channel in emulator.state.messages.values():
            for message in channel.values():
                metadata = message.metadata or {}
                if message.deleted or metadata.get("event_type") != METADATA_EVENT:
                    continue
                payload = metadata.get("event_payload") or {}
                found[(int(payload["outbox_id"]), int(payload.get("part", 0)))] += 1
    return found


def thread(emulator: SlackEmulator, channel: str, ts: str) -> list[Any]:
    return [m for m in emulator.messages(channel, ts) if not m.deleted]
