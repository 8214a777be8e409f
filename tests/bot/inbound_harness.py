"""A harness for the Slack intake: people act in the emulator, the events they cause are stored as
the listener stores them, and the worker's real loop hands them to `SlackEventHandler`, which talks
to the emulator with the real slack_sdk client. Nothing is delivered (no performers): tests read
the store and the outbox rows the actions wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.inbound import SlackEventHandler
from bot.listeners.events import SLACK_EVENT, event_lane, worth_storing
from bot.worker import Worker, WorkerConfig
from sandbox.slack_emulator import SlackEmulator
from sandbox.workspace import BOT_TOKEN, CONNECT, DAN, HELP, TRIAGE
from store import inbound
from store.context import Desk
from store.db import Database
from store.models import InboundItem, Message, Outbox, Ticket
from store.settings import Settings


def desk_settings(database_url: str, emulator: SlackEmulator, files_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": "unused",
        "slack_api_url": emulator.api_url,
        "triage_channel": TRIAGE,
        "intake_channels": (CONNECT, HELP),
        "files_dir": files_dir,
        "reply_delay_seconds": 30,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Intake:
    emulator: SlackEmulator
    desk: Desk
    fed: int = 0
    stored: list[bool] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.desk.db

    def handler(self) -> SlackEventHandler:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=self.emulator.api_url, retry_handlers=[])
        return SlackEventHandler(self.desk, client)

    def store(self, payload: dict[str, Any], key: str | None = None) -> bool:
        """What the events listener does with an envelope (the HTTP part is the e2e tests')."""
        event = payload.get("event") or {}
        if payload.get("type") != "message_action" and not worth_storing(event, self.desk):
            self.stored.append(False)
            return False
        accepted = inbound.accept(
            self.db,
            SLACK_EVENT,
            key or f"slack:{payload.get('event_id') or payload.get('trigger_id')}",
            payload=payload,
            lane=event_lane(event) if event else f"slack:{payload['channel']['id']}",
        )
        self.stored.append(accepted)
        return accepted

    def run(self, handler: SlackEventHandler | None = None) -> None:
        """Store every event the emulator produced since the last run, then work until idle."""
        for payload in self.emulator.events[self.fed :]:
            self.store(payload)
        self.fed = len(self.emulator.events)
        worker = Worker(
            self.db,
            {},
            {SLACK_EVENT: (handler or self.handler()).handle},
            worker_id="test-worker",
            config=WorkerConfig(idle_sleep=0.0),
        )

        async def drain() -> None:
            while await worker.run_once():
                pass

        asyncio.run(drain())

    # ----- reading the store -----

    def tickets(self) -> list[Ticket]:
        with self.db.transaction() as session:
            return list(session.scalars(select(Ticket).order_by(Ticket.number)))

    def messages(self) -> list[Message]:
        with self.db.transaction() as session:
            return list(session.scalars(select(Message).order_by(Message.id)))

    def outbox(self, kind: str | None = None) -> list[Outbox]:
        with self.db.transaction() as session:
            query = select(Outbox).order_by(Outbox.id)
            if kind is not None:
                query = query.where(Outbox.kind == kind)
            return list(session.scalars(query))

    def intake_states(self) -> list[str]:
        with self.db.transaction() as session:
            return [
                item.state
                for item in session.scalars(
                    select(InboundItem).where(InboundItem.kind == SLACK_EVENT).order_by(InboundItem.id)
                )
            ]


# ----- fixtures (imported by the test modules) and the steps most tests start with -----


@pytest.fixture(name="emulator")
def emulator_fixture() -> Iterator[SlackEmulator]:
    emu = SlackEmulator().start()
    yield emu
    emu.stop()


@pytest.fixture(name="intake")
def intake_fixture(database_url: str, emulator: SlackEmulator, tmp_path: Path) -> Iterator[Intake]:
    desk = Desk.build(desk_settings(database_url, emulator, tmp_path / "files"))
    yield Intake(emulator, desk)
    desk.db.dispose()


def all_done(intake: Intake) -> bool:
    return all(state == "done" for state in intake.intake_states())


def bot_client(intake: Intake) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=intake.emulator.api_url)


def open_connect_ticket(intake: Intake, text: str = "Printer is *on fire*") -> str:
    ts = intake.emulator.user_post(DAN, CONNECT, text)
    intake.run()
    return ts


def triage_thread(intake: Intake, number: int = 1) -> str:
    """Stand in for the card performer: post the card and record its ts on the ticket."""
    client = bot_client(intake)
    with intake.db.transaction() as session:
        ticket = session.scalars(select(Ticket).where(Ticket.number == number)).one()
        ts = str(client.chat_postMessage(channel=TRIAGE, text=f"#{number} {ticket.subject}")["ts"])
        ticket.triage_ts = ts
    return ts
