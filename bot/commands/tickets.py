"""A ticket itself: `new` (on a customer's behalf), `note` (internal), `show`."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.blocks import card_blocks
from bot.blocks.format import age
from bot.blocks.lists import lines_to_sections
from bot.cards import card_view
from bot.commands.base import CommandContext, CommandReply, Invocation, UsageError, Verb, ticket_transaction
from bot.commands.tokens import email_address, plain_words
from bot.commands.views import StoreMentionResolver, thread_permalink
from bot.text import escape_mrkdwn, mrkdwn_to_markdown
from store.actions import add_note, customer_for_email, open_ticket
from store.db import InvalidRequest
from store.models import Direction, Message, Origin, Participant, Ticket, Visibility, utcnow

SUBJECT_LIMIT = 500


# A subject typed in quotes, straight or as keyboards curl them: the quotes mark where it starts
# and ends, and are not part of it (they would show in the customer's Subject line).
_QUOTE_PAIRS = {'"': '"', "“": "”", "„": "“", "«": "»", "”": "”"}


def _unquoted(subject: str) -> str:
    closing = _QUOTE_PAIRS.get(subject[:1])
    inner = subject[1:-1]
    if closing is None or len(subject) < 2 or not subject.endswith(closing):
        return subject
    if any(mark in inner for mark in (subject[0], closing)):
        return subject  # `"a" and "b"`: quotes inside it, not around it
    return inner.strip()


def run_new(ctx: CommandContext, inv: Invocation) -> CommandReply:
    """A ticket for a customer who wrote some other way; staff's first thread message emails them."""
    inv.expect(1)
    address = email_address(inv.args[0])
    if address is None:
        raise UsageError(f"`{str(inv.args[0])[:60]}` is not an email address.")
    if ctx.desk.policy.is_own_address(address):
        # A ticket's reply address too: the ticket's mail would go to another ticket, and back.
        raise InvalidRequest(f"{address} is the desk's own address")
    with ctx.desk.db.transaction() as session:
        # One line, as a subject is everywhere (a `!new` message may hold line breaks).
        subject = _unquoted(" ".join(plain_words(inv.rest(1), StoreMentionResolver(session)).split()))
        if not subject:
            raise UsageError("Give the ticket a subject.")
        customer = customer_for_email(session, address)
        ticket = open_ticket(
            session,
            ctx.desk.policy,
            subject=subject[:SUBJECT_LIMIT],
            requester=customer,
            origin=Origin.STAFF,
            actor=ctx.actor,
        )
        number = ticket.number
    channel = ctx.desk.settings.triage_channel
    where = f"its thread in <#{channel}>" if channel else "its thread"
    return CommandReply(
        f"Opened #{number} for {escape_mrkdwn(address)}. Write to them in {where}: "
        "your first message there is the first email they get."
    )


def run_note(ctx: CommandContext, inv: Invocation) -> CommandReply:
    text = inv.rest(0)
    if not text:
        raise UsageError("Write the note after the ticket number.")
    with ticket_transaction(ctx, inv.number) as (session, ticket):
        body = mrkdwn_to_markdown(text, StoreMentionResolver(session))
        add_note(session, ticket, author=ctx.actor, body_markdown=body)
    return CommandReply(f":lock: Internal note added to #{inv.number}; the customer never sees it.")


def _counted(number: int, one: str, many: str) -> str:
    """`1 reply`, `2 replies`: the words staff read in /desk show."""
    return f"{number} {one if number == 1 else many}"


def _detail_lines(
    session: Session, ticket: Ticket, workspace_url: str | None, *, merged_into: int | None = None
) -> list[str]:
    """What the card leaves out: who gets the emails, how much was said, where the thread is."""
    if merged_into is not None:
        # The merge moved them: counting what is left would read as a customer who never wrote.
        return _thread_link(
            [
                f"Participants and messages: moved to #{merged_into} with the merge · last change "
                f"{age(ticket.updated_at, utcnow())} ago"
            ],
            workspace_url,
            ticket,
        )
    people = session.execute(
        select(Participant.email, Participant.role, Participant.unsubscribed_at, Participant.bounced_at)
        .where(Participant.ticket_id == ticket.id)
        .order_by(Participant.role.desc(), Participant.id)
    ).all()
    shown = []
    for email, role, unsubscribed, bounced in people:
        flags = (("requester", role == "requester"), ("unsubscribed", unsubscribed), ("bounced", bounced))
        notes = [word for word, flag in flags if flag]
        shown.append(escape_mrkdwn(email) + (f" ({', '.join(notes)})" if notes else ""))
    counts = {
        (row[0], row[1]): int(row[2])
        for row in session.execute(
            select(Message.direction, Message.visibility, func.count())
            .where(Message.ticket_id == ticket.id, Message.deleted_at.is_(None))
            .group_by(Message.direction, Message.visibility)
        )
    }
    from_customer = counts.get((Direction.INBOUND.value, Visibility.PUBLIC.value), 0)
    replies = counts.get((Direction.OUTBOUND.value, Visibility.PUBLIC.value), 0)
    notes_count = counts.get((Direction.OUTBOUND.value, Visibility.INTERNAL.value), 0)
    lines = [
        f"Participants: {', '.join(shown) if shown else 'none by email'}",
        f"Messages: {from_customer} from the customer, {_counted(replies, 'reply', 'replies')}, "
        f"{_counted(notes_count, 'note', 'notes')} · "
        f"last change {age(ticket.updated_at, utcnow())} ago",
    ]
    return _thread_link(lines, workspace_url, ticket)


def _thread_link(lines: list[str], workspace_url: str | None, ticket: Ticket) -> list[str]:
    permalink = thread_permalink(workspace_url, ticket)
    return [*lines, f"<{permalink}|Open the thread>"] if permalink else lines


def run_show(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(0, 0)
    with ticket_transaction(ctx, inv.number, live=False) as (session, ticket):
        view = card_view(session, ticket)
        details = _detail_lines(session, ticket, ctx.workspace_url, merged_into=view.merged_into)
    return CommandReply(
        f"#{view.number} {escape_mrkdwn(view.subject)}", blocks=card_blocks(view) + lines_to_sections(details)
    )


VERBS = (
    Verb("new", run_new, "<email> <subject>", takes_ticket=False),
    Verb("note", run_note, "<text>"),
    Verb("show", run_show),
)
