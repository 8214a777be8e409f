"""Who owns a ticket and who hears about it: `assign`, `unassign`, `cc`."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.commands.base import CommandContext, CommandReply, Invocation, UsageError, Verb, ticket_transaction
from bot.commands.tokens import Token, email_address, list_items, user_mention
from bot.text import escape_mrkdwn
from store import queries
from store.actions import add_participant, assign, remove_participant
from store.actions.common import DeskPolicy
from store.actions.tickets import participant_on
from store.db import InvalidRequest


def resolve_person(session: Session, ctx: CommandContext, token: Token) -> tuple[str, str]:
    """(Slack id, name) of `me`, a mention, or a typed handle Slack did not turn into a mention; the
    name is "" when no one knows it (the store's thread line then mentions them)."""
    if token.word == "me":
        return ctx.user_id, ctx.user_name
    mention = user_mention(token)
    if mention is not None:
        user_id, mentioned_name = mention
        if user_id in ctx.unknown_users:
            raise UsageError(f"Slack knows no one as `{user_id}`: mention them with @.")
        profile = queries.slack_user(session, user_id)
    else:
        profile = queries.slack_user_by_name(session, str(token))
        if profile is None:
            raise UsageError(f"I don't know who `{str(token)[:40]}` is: mention them with @.")
        user_id, mentioned_name = profile.user_id, None
    if profile is not None and profile.is_bot:
        raise InvalidRequest("a bot cannot own a ticket")
    return user_id, queries.display_name(profile, mentioned_name or "")


def run_assign(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(1, 1)
    with ticket_transaction(ctx, inv.number) as (session, ticket):
        user_id, name = resolve_person(session, ctx, inv.args[0])
        changed = assign(session, ticket, user_id, ctx.actor, assignee_name=name)
    if not changed:
        return CommandReply(f"#{inv.number} is already assigned to <@{user_id}>: nothing changed.")
    return CommandReply(f"Assigned #{inv.number} to <@{user_id}>.")


def run_unassign(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(0, 0)
    with ticket_transaction(ctx, inv.number) as (session, ticket):
        changed = assign(session, ticket, None, ctx.actor)
    if not changed:
        return CommandReply(f"#{inv.number} has no assignee: nothing changed.")
    return CommandReply(f"#{inv.number} is unassigned.")


def run_cc(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(2)
    mode = inv.args[0].word
    if mode not in ("add", "remove"):
        raise UsageError("Say `add` or `remove`.")
    addresses = []
    items = list_items(list(inv.args[1:]))
    if not items:
        raise UsageError("Which address?")
    for token in items:
        address = email_address(token)
        if address is None:
            raise UsageError(f"`{str(token)[:60]}` is not an email address.")
        addresses.append(address)
    done: list[str] = []
    why_not: dict[str, list[str]] = {}
    policy = ctx.desk.policy
    with ticket_transaction(ctx, inv.number) as (session, ticket):
        for address in addresses:
            if mode == "remove":
                remove_participant(session, ticket, address, ctx.actor)
                done.append(address)
            elif add_participant(session, policy, ticket, address, ctx.actor) is not None:
                done.append(address)
            else:
                why_not.setdefault(_not_added_because(session, policy, ticket.id, address), []).append(
                    address
                )
    shown = ", ".join(escape_mrkdwn(address) for address in done)
    if mode == "remove":
        return CommandReply(f"Removed {shown} from #{inv.number}.")
    reasons = "; ".join(
        f"{', '.join(escape_mrkdwn(address) for address in skipped)}: {reason}"
        for reason, skipped in why_not.items()
    )
    if not done:
        return CommandReply(f"Nothing added to #{inv.number} ({reasons}).")
    note = f" (not added: {reasons})" if reasons else ""
    return CommandReply(f"Added {shown} to #{inv.number}{note}: they get the ticket's emails from now on.")


def _not_added_because(session: Session, policy: DeskPolicy, ticket_id: int, address: str) -> str:
    """Why `add_participant` added no one: the words for the person who asked."""
    if policy.is_own_address(address):
        return "the desk's own address"
    if participant_on(session, ticket_id, address) is not None:
        return "already there"
    return (
        f"the ticket has the most participants it takes ({policy.max_participants}, "
        "SERVICEDESK_MAX_PARTICIPANTS)"
    )


VERBS = (
    Verb("assign", run_assign, "@user|me"),
    Verb("unassign", run_unassign),
    Verb("cc", run_cc, "add|remove <email>"),
)
