"""The card's controls (status, priority, assignee, labels menus) run the same verbs as the
commands, so they validate, refuse and record exactly as `/desk` does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.blocks import ACTION_ASSIGNEE, ACTION_LABELS, ACTION_PRIORITY, ACTION_STATUS
from bot.commands.base import CommandContext, CommandReply, sentence
from bot.commands.labels import set_labels
from bot.commands.runner import refused, run_thread_command
from store.db import InvalidRequest, NotFound

_USER_ID = re.compile(r"^[UW][A-Z0-9]{1,30}$")
_WORD = re.compile(r"^[a-z]{1,16}$")


def _selected_value(action: Mapping[str, Any]) -> str | None:
    option = action.get("selected_option") or {}
    value = option.get("value") if isinstance(option, Mapping) else None
    return value if isinstance(value, str) and _WORD.match(value) else None


def run_card_action(ctx: CommandContext, number: int, action: Mapping[str, Any]) -> CommandReply:
    """One `block_actions` action on ticket #number's card."""
    refusal = refused(ctx)
    if refusal is not None:
        return refusal
    action_id = action.get("action_id")
    if action_id in (ACTION_STATUS, ACTION_PRIORITY):
        value = _selected_value(action)
        if value is None:
            return CommandReply("That choice is not one the desk knows.", ok=False)
        verb = "status" if action_id == ACTION_STATUS else "priority"
        return run_thread_command(ctx, number, f"{verb} {value}")
    if action_id == ACTION_ASSIGNEE:
        user_id = action.get("selected_user")
        if not user_id:
            return run_thread_command(ctx, number, "unassign")
        if not isinstance(user_id, str) or not _USER_ID.match(user_id):
            return CommandReply("That is not a Slack user.", ok=False)
        return run_thread_command(ctx, number, f"assign <@{user_id}>")
    if action_id == ACTION_LABELS:
        options = action.get("selected_options") or []
        names = [str(option.get("value", "")) for option in options if isinstance(option, Mapping)]
        try:
            return set_labels(ctx, number, names)
        except (NotFound, InvalidRequest) as problem:
            return CommandReply(sentence(str(problem)), ok=False)
    return CommandReply("The desk does not know that control.", ok=False)
