"""Bolt listeners grouped by kind; each module has a `register(app, desk)`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.listeners import actions, commands, events, shortcuts
from bot.listeners.triage_context import TriageSide
from store.context import Desk


def register_all(app: AsyncApp, desk: Desk) -> None:
    events.register(app, desk)
    shortcuts.register(app, desk)
    side = TriageSide.build(desk, app.client)
    commands.register(app, side)
    actions.register(app, side)
