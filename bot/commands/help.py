"""`help`: every verb, or the usage of one (`/desk help merge`)."""

from __future__ import annotations

from bot.blocks import help_blocks, help_text
from bot.commands.base import CommandContext, CommandReply, Invocation, UsageError, Verb


def run_help(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(0, 1)
    if inv.args:
        # Imported here: the registry is assembled from this module among others.
        from bot.commands.registry import find_verb

        verb = find_verb(inv.args[0].word)
        if verb is None:
            raise UsageError(f"There is no command `{str(inv.args[0])[:40]}`.")
        return CommandReply(f"Usage: {verb.usage(inv.in_thread)}")
    return CommandReply(help_text(), blocks=help_blocks())


VERBS = (Verb("help", run_help, "[verb]", takes_ticket=False),)
