"""Lifecycle and urgency: `status`, `close`, `reopen`, `priority`.

The store tells the customer of resolved, closed and reopened (template email, or a line in
their Slack thread) and queues the thread line and the card update; the answer says so.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.commands.base import CommandContext, CommandReply, Invocation, UsageError, Verb, ticket_transaction
from store.actions import set_priority, set_status
from store.actions.common import mail_recipients, mail_started
from store.models import Priority, Status, Ticket

FINISHED = (Status.RESOLVED.value, Status.CLOSED.value)
STATUS_WORDS = "|".join(status.value for status in Status)
PRIORITY_WORDS = "|".join(priority.value for priority in Priority)


def customer_hears(session: Session, ticket: Ticket) -> bool:
    if ticket.origin_channel and ticket.origin_thread_ts:
        return True
    # By email only once the desk and the customer have a conversation (notify_customer).
    return mail_started(session, ticket) and bool(mail_recipients(session, ticket))


def _change_status(ctx: CommandContext, number: int, status: str, *, reopening: bool = False) -> CommandReply:
    with ticket_transaction(ctx, number) as (session, ticket):
        old = ticket.status
        if reopening and old not in FINISHED:
            # Only a finished ticket reopens; "pending" is still being worked.
            return CommandReply(f"#{number} is {old}, not resolved or closed: nothing to reopen.")
        changed = set_status(session, ctx.desk.policy, ticket, status, ctx.actor)
        told = changed and customer_hears(session, ticket)
    if not changed:
        return CommandReply(f"#{number} is already {status}: nothing changed.")
    reopened = old in FINISHED and status not in FINISHED
    text = f"Reopened #{number}." if reopened else f"#{number} is now {status}."
    if told and (reopened or status in FINISHED):
        text += " The customer is told."
    return CommandReply(text)


def run_status(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(1, 1)
    status = inv.args[0].word
    if status not in {s.value for s in Status}:
        raise UsageError(f"`{inv.args[0].raw[:40]}` is not a status.")
    return _change_status(ctx, inv.number, status)


def run_close(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(0, 0)
    return _change_status(ctx, inv.number, Status.CLOSED.value)


def run_reopen(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(0, 0)
    return _change_status(ctx, inv.number, Status.OPEN.value, reopening=True)


def run_priority(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(1, 1)
    priority = inv.args[0].word
    if priority not in {p.value for p in Priority}:
        raise UsageError(f"`{inv.args[0].raw[:40]}` is not a priority.")
    with ticket_transaction(ctx, inv.number) as (session, ticket):
        changed = set_priority(session, ticket, priority, ctx.actor)
    if not changed:
        return CommandReply(f"#{inv.number} already has {priority} priority: nothing changed.")
    return CommandReply(f"#{inv.number} now has {priority} priority.")


VERBS = (
    Verb("status", run_status, STATUS_WORDS),
    Verb("close", run_close),
    Verb("reopen", run_reopen),
    Verb("priority", run_priority, PRIORITY_WORDS),
)
