"""What every verb shares: who runs it, what it answers, how it is declared, and its ticket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.commands.tokens import Token
from bot.text import escape_mrkdwn
from store.actions import Actor, ticket_by_number
from store.actions.tickets import TICKET_LOCK
from store.context import Desk
from store.db import InvalidRequest, NotFound
from store.models import Ticket


@dataclass(frozen=True)
class CommandContext:
    """Who runs a command. `is_staff` is decided by the caller (members of the triage channel)."""

    desk: Desk
    user_id: str
    user_name: str
    is_staff: bool
    # The workspace's base URL (auth.test's `url`), so lists can link each ticket's thread.
    workspace_url: str | None = None
    # People mentioned in the command whom Slack says it does not know (looked up before it runs).
    unknown_users: frozenset[str] = frozenset()

    @property
    def actor(self) -> Actor:
        return Actor(name=self.user_name or self.user_id, slack_id=self.user_id)


@dataclass(frozen=True)
class CommandReply:
    """The answer, in mrkdwn: shown only to the person who ran the command."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    ok: bool = True


class UsageError(Exception):
    """The words do not fit the verb; the message says what is wrong, the usage line is added."""


@dataclass(frozen=True)
class Invocation:
    """One verb to run: its ticket (when it takes one), the words after it, and the raw text."""

    verb: str
    ticket_number: int | None
    args: tuple[Token, ...]
    text: str
    in_thread: bool

    @property
    def number(self) -> int:
        if self.ticket_number is None:
            raise UsageError("Which ticket? Give its number.")
        return self.ticket_number

    def rest(self, index: int = 0) -> str:
        """The text from the index-th argument on, as typed (free text: a subject, a note)."""
        if index >= len(self.args):
            return ""
        return self.text[self.args[index].start :].strip()

    def expect(self, least: int, most: int | None = None) -> None:
        count = len(self.args)
        if count < least:
            raise UsageError("Something is missing.")
        if most is not None and count > most:
            extra = " ".join(token.raw for token in self.args[most:])
            raise UsageError(f"I don't understand `{extra[:60]}` here.")


Handler = Callable[[CommandContext, Invocation], CommandReply]


@dataclass(frozen=True)
class Verb:
    name: str
    handler: Handler
    syntax: str = ""  # what follows the ticket number, e.g. "low|normal|high|urgent"
    takes_ticket: bool = True
    aliases: tuple[str, ...] = ()

    def usage(self, in_thread: bool) -> str:
        words = [f"!{self.name}" if in_thread else f"/desk {self.name}"]
        if self.takes_ticket and not in_thread:
            words.append("<n>")
        if self.syntax:
            words.append(self.syntax)
        # `<n>` unescaped is Slack syntax (a link to "n"): Slack would show "n" and drop the brackets.
        return f"`{escape_mrkdwn(' '.join(words))}`"


@contextmanager
def ticket_transaction(
    ctx: CommandContext, number: int, *, live: bool = True
) -> Iterator[tuple[Session, Ticket]]:
    """One transaction on one ticket, locked so concurrent triage of it is serialized.

    `live`: the ticket must not have been merged away (its conversation continues elsewhere).
    """
    with ctx.desk.db.transaction() as session:
        ticket = ticket_by_number(session, number, lock=True)
        if live:
            require_live(session, ticket)
        yield session, ticket


def lock_tickets(session: Session, numbers: list[int]) -> dict[int, Ticket]:
    """Several tickets locked in one order (by id), so two merges crossing each other cannot
    deadlock; NotFound names the first number that does not exist."""
    found = {
        ticket.number: ticket
        for ticket in session.scalars(
            select(Ticket)
            .where(Ticket.number.in_(numbers))
            .order_by(Ticket.id)
            .with_for_update(**TICKET_LOCK)
        )
    }
    for number in numbers:
        if number not in found:
            raise NotFound(f"there is no ticket #{number}")
    return found


def require_live(session: Session, ticket: Ticket) -> None:
    if ticket.merged_into_id is None:
        return
    target = session.get(Ticket, ticket.merged_into_id)
    where = f"#{target.number}" if target is not None else "another ticket"
    raise InvalidRequest(f"#{ticket.number} was merged into {where}: work on {where} instead")


def sentence(text: str) -> str:
    """A store message ("there is no ticket #9") as a sentence for people."""
    text = text.strip()
    if not text:
        return text
    first_word = text.split()[0]
    if first_word.isalpha() and first_word.islower():
        # Not an address, a #number or a label name, whose case matters.
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?`)" else text + "."
