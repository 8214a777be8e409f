"""The one entry point for `/desk` and in-thread `!` commands: refuse, parse, run one verb, and
turn the store's plain-words errors into the answer. Nothing changes unless the verb succeeds:
each verb is one transaction, rolled back by any error."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import DataError

from bot.blocks.messages import command_usage, desk_usage, not_staff
from bot.commands.base import CommandContext, CommandReply, Invocation, UsageError, Verb, sentence
from bot.commands.registry import find_verb
from bot.commands.tokens import ticket_number as parse_number
from bot.commands.tokens import tokenize
from store.db import CommitUnknown, InvalidRequest, NotFound, StoreBusy, StoreUnavailable
from store.models import Ticket

log = logging.getLogger(__name__)

# The answers to a command the database failed (store_trouble).
STORE_DOWN = "The desk cannot reach its database right now, so nothing changed. Try again in a minute."
STORE_BUSY = "The desk's database was too busy to do that in time, so nothing changed. Try again."
COMMIT_UNKNOWN = (
    "The desk lost its database connection while saving that, so it may or may not have been done. "
    "Look (`/desk show`, `/desk list`) before you run it again."
)


def store_trouble(error: StoreUnavailable) -> str:
    """What the person is told when the database failed them: only what is known to be true."""
    if isinstance(error, CommitUnknown):
        return COMMIT_UNKNOWN
    if isinstance(error, StoreBusy):
        return STORE_BUSY
    return STORE_DOWN


def refused(ctx: CommandContext) -> CommandReply | None:
    if ctx.is_staff:
        return None
    log.info("command refused: %s is not staff", ctx.user_id)
    return CommandReply(not_staff(), ok=False)


def _usage(verb: Verb, in_thread: bool, problem: str) -> CommandReply:
    return CommandReply(f"{problem} Usage: {verb.usage(in_thread)}", ok=False)


def _execute(ctx: CommandContext, verb: Verb, invocation: Invocation) -> CommandReply:
    try:
        return verb.handler(ctx, invocation)
    except UsageError as problem:
        missing = _missing_ticket(ctx, invocation)
        if missing is not None:
            return missing
        return _usage(verb, invocation.in_thread, str(problem))
    except (NotFound, InvalidRequest) as problem:
        return CommandReply(sentence(str(problem)), ok=False)
    except DataError:
        # A value a column cannot hold that no check caught (PostgreSQL enforces lengths, SQLite
        # does not): the verb's transaction rolled back, and the person still gets an answer.
        log.exception("%s: a value did not fit the store", verb.name)
        return CommandReply(
            "A value in that command cannot be stored (too long, or a character the database "
            "refuses): nothing changed.",
            ok=False,
        )


def _missing_ticket(ctx: CommandContext, invocation: Invocation) -> CommandReply | None:
    """`/desk link 999` for a ticket that does not exist: the missing ticket is the answer, not the
    usage line. Corrected words would only lead to "there is no ticket #999" next."""
    if invocation.in_thread or invocation.ticket_number is None:
        return None  # a thread's ticket is the thread's own: it exists
    with ctx.desk.db.read() as session:
        exists = session.scalar(select(Ticket.id).where(Ticket.number == invocation.ticket_number))
    if exists is not None:
        return None
    return CommandReply(sentence(f"there is no ticket #{invocation.ticket_number}"), ok=False)


def run_desk_command(ctx: CommandContext, text: str) -> CommandReply:
    """`/desk <verb> [<n>] …`: the ticket number comes first for the verbs that take one."""
    refusal = refused(ctx)
    if refusal is not None:
        return refusal
    tokens = tokenize(text)
    if not tokens:
        tokens = tokenize("help")
        text = "help"
    verb = find_verb(tokens[0].word)
    if verb is None:
        return CommandReply(desk_usage(tokens[0].raw), ok=False)
    args = tokens[1:]
    number: int | None = None
    if verb.takes_ticket:
        if not args:
            return _usage(verb, False, "Which ticket? Give its number.")
        number = parse_number(args[0])
        if number is None:
            return _usage(verb, False, f"`{args[0].raw[:40]}` is not a ticket number.")
        args = args[1:]
    invocation = Invocation(verb.name, number, tuple(args), text, in_thread=False)
    return _execute(ctx, verb, invocation)


def run_thread_command(ctx: CommandContext, ticket_number: int, text: str) -> CommandReply:
    """`!<verb> …` typed in ticket #ticket_number's thread (`text` without the `!`)."""
    refusal = refused(ctx)
    if refusal is not None:
        return refusal
    tokens = tokenize(text)
    verb = find_verb(tokens[0].word) if tokens else None
    if verb is None:
        return CommandReply(command_usage(tokens[0].raw if tokens else ""), ok=False)
    invocation = Invocation(
        verb.name, ticket_number if verb.takes_ticket else None, tuple(tokens[1:]), text, in_thread=True
    )
    return _execute(ctx, verb, invocation)
