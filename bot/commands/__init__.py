"""Triage commands: one parser and executor shared by `/desk` and in-thread `!` commands.

Synchronous (callers run them with `asyncio.to_thread`); each verb is one store transaction.
"""

from bot.commands.base import CommandContext, CommandReply
from bot.commands.card_actions import run_card_action
from bot.commands.runner import run_desk_command, run_thread_command, store_trouble

__all__ = [
    "CommandContext",
    "CommandReply",
    "run_card_action",
    "run_desk_command",
    "run_thread_command",
    "store_trouble",
]
