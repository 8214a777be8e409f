"""Links between tickets and to any tracker, and merging duplicates: `link`, `unlink`, `merge`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from bot.commands.base import (
    CommandContext,
    CommandReply,
    Invocation,
    UsageError,
    Verb,
    lock_tickets,
    require_live,
    ticket_transaction,
)
from bot.commands.lifecycle import customer_hears
from bot.commands.tokens import link_url, ticket_number
from bot.text import escape_mrkdwn
from store.actions import link, merge, unlink
from store.models import LinkKind, Ticket

KIND_WORDS = "|".join(kind.value for kind in LinkKind)


# A link's transaction: its ticket, and the other ticket or the URL it names.
LinkEnds = tuple[Session, Ticket, Ticket | None, str | None]


@contextmanager
def _link_transaction(ctx: CommandContext, inv: Invocation) -> Iterator[LinkEnds]:
    """One transaction on the invocation's ticket and what its first argument names: another
    ticket, locked with it in one order (`lock_tickets`), or a URL. With both ends locked, the same
    link asked from either side at once is made once, not once each way."""
    number = ticket_number(inv.args[0])
    if number is None:
        url = link_url(inv.args[0])
        if url is None:
            raise UsageError(f"`{str(inv.args[0])[:60]}` is neither a ticket number nor an http(s) link.")
        with ticket_transaction(ctx, inv.number) as (session, ticket):
            yield session, ticket, None, url
        return
    with ctx.desk.db.transaction() as session:
        locked = lock_tickets(session, [inv.number, number])
        require_live(session, locked[inv.number])
        yield session, locked[inv.number], locked[number], None


def _shown(target: Ticket | None, url: str | None) -> str:
    return f"#{target.number}" if target is not None else escape_mrkdwn(url or "")


def run_link(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(1, 2)
    kind = inv.args[1].word if len(inv.args) > 1 else LinkKind.RELATES.value
    with _link_transaction(ctx, inv) as (session, ticket, target, url):
        # Checked once both tickets are known to exist: `link 1 999 sideways` is answered that
        # #999 does not exist, not with a usage line whose correction would only lead there.
        if kind not in {k.value for k in LinkKind}:
            raise UsageError(f"`{str(inv.args[1])[:40]}` is not a kind of link.")
        changed = link(session, ticket, ctx.actor, target=target, url=url, kind=kind)
        shown = _shown(target, url)
    if not changed:
        return CommandReply(f"#{inv.number} is already linked to {shown} ({kind}): nothing changed.")
    return CommandReply(f"Linked #{inv.number} to {shown} ({kind}).")


def run_unlink(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(1, 1)
    with _link_transaction(ctx, inv) as (session, ticket, target, url):
        changed = unlink(session, ticket, ctx.actor, target=target, url=url)
        shown = _shown(target, url)
    if not changed:
        return CommandReply(f"#{inv.number} has no link to {shown}: nothing changed.")
    return CommandReply(f"Removed the link from #{inv.number} to {shown}.")


def run_merge(ctx: CommandContext, inv: Invocation) -> CommandReply:
    """`merge <n> into <m>` (`into` may be left out)."""
    args = list(inv.args)
    if args and args[0].word == "into":
        args = args[1:]
    if len(args) != 1:
        raise UsageError("Merge into which ticket?")
    target_number = ticket_number(args[0])
    if target_number is None:
        raise UsageError(f"`{str(args[0])[:40]}` is not a ticket number.")
    with ctx.desk.db.transaction() as session:
        locked = lock_tickets(session, [inv.number, target_number])
        source, target = locked[inv.number], locked[target_number]
        require_live(session, source)
        require_live(session, target)
        # Asked before the merge moves its participants: a `/desk new` ticket no one has written
        # to yet is not announced (store.actions.common.mail_started), and the answer says so.
        told = customer_hears(session, source)
        merge(session, ctx.desk.policy, source, target, ctx.actor)
    return CommandReply(
        f"Merged #{inv.number} into #{target_number}: its messages and participants moved there, "
        + ("the customer is told, " if told else "")
        + f"and later replies to it land on #{target_number}."
    )


VERBS = (
    Verb("link", run_link, f"<m|url> [{KIND_WORDS}]"),
    Verb("unlink", run_unlink, "<m|url>"),
    Verb("merge", run_merge, "into <m>"),
)
