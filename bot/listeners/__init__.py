"""Bolt listeners grouped by kind; each module has a `register(app, desk)`."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.listeners import actions, commands, events, shortcuts
from store.context import Desk


def register_all(app: AsyncApp, desk: Desk) -> None:
    events.register(app, desk)
    shortcuts.register(app, desk)
    commands.register(app, desk)
    actions.register(app, desk)
