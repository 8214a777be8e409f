"""The card's controls (status, priority, assignee, labels menus) run the same verbs as the
commands, so they validate, refuse and record exactly as `/desk` does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.blocks import ACTION_ASSIGNEE, ACTION_LABELS, ACTION_PRIORITY, ACTION_STATUS
from bot.commands.base import CommandContext, CommandReply, sentence, ticket_transaction
from bot.commands.labels import set_labels
from bot.commands.runner import refused, run_thread_command
from store.actions import assign
from store.db import InvalidRequest, NotFound

_USER_ID = re.compile(r"^[UW][A-Z0-9]{1,30}$")
_WORD = re.compile(r"^[a-z]{1,16}$")


def _selected_value(action: Mapping[str, Any]) -> str | None:
    option = action.get("selected_option") or {}
    value = option.get("value") if isinstance(option, Mapping) else None
    return value if isinstance(value, str) and _WORD.match(value) else None


def _element_shown(card: Any, action: Mapping[str, Any], action_id: str) -> Mapping[str, Any] | None:
    """The menu `action_id` as the presser's card showed it; None when the payload does not carry
    that card."""
    if not isinstance(card, Mapping) or not isinstance(card.get("blocks"), list):
        return None
    for block in card["blocks"]:
        if not isinstance(block, Mapping) or block.get("block_id") != action.get("block_id"):
            continue
        for element in block.get("elements") or []:
            if isinstance(element, Mapping) and element.get("action_id") == action_id:
                return element
    return None


def labels_shown(card: Any, action: Mapping[str, Any]) -> list[str] | None:
    """The labels the presser's card showed picked (its menu's `initial_options`) when they changed
    the menu; None when the payload does not carry that card."""
    element = _element_shown(card, action, ACTION_LABELS)
    if element is None:
        return None
    initial = element.get("initial_options") or []
    return [str(o.get("value", "")) for o in initial if isinstance(o, Mapping)]


def _unassign_shown(ctx: CommandContext, number: int, card: Any, action: Mapping[str, Any]) -> CommandReply:
    """The picker emptied: it takes off the owner the presser's card showed. Someone else took the
    ticket since (the card had not caught up) is not unassigned by a person who never saw them;
    nothing changes and the presser is told who owns it now."""
    element = _element_shown(card, action, ACTION_ASSIGNEE)
    if element is None:  # no card in the payload: as `/desk unassign`
        return run_thread_command(ctx, number, "unassign")
    shown = element.get("initial_user") or None
    try:
        with ticket_transaction(ctx, number) as (session, ticket):
            now = ticket.assignee_slack_id
            if now is None:
                return CommandReply(f"#{number} has no assignee: nothing changed.")
            if now != shown:
                return CommandReply(
                    f"#{number} is now assigned to <@{now}>, not to whom your card showed: nothing "
                    "changed. Clear it again on the card as it is now to unassign them.",
                    ok=False,
                )
            assign(session, ticket, None, ctx.actor)
    except (NotFound, InvalidRequest) as problem:
        return CommandReply(sentence(str(problem)), ok=False)
    return CommandReply(f"#{number} is unassigned.")


def run_card_action(
    ctx: CommandContext, number: int, action: Mapping[str, Any], card: Any = None
) -> CommandReply:
    """One `block_actions` action on ticket #number's card; `card` is the card as the payload
    carries it (the message the presser acted on)."""
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
            return _unassign_shown(ctx, number, card, action)
        if not isinstance(user_id, str) or not _USER_ID.match(user_id):
            return CommandReply("That is not a Slack user.", ok=False)
        return run_thread_command(ctx, number, f"assign <@{user_id}>")
    if action_id == ACTION_LABELS:
        options = action.get("selected_options") or []
        names = [str(option.get("value", "")) for option in options if isinstance(option, Mapping)]
        try:
            return set_labels(ctx, number, names, was=labels_shown(card, action))
        except (NotFound, InvalidRequest) as problem:
            return CommandReply(sentence(str(problem)), ok=False)
    return CommandReply("The desk does not know that control.", ok=False)
