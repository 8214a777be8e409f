"""Finding tickets and people: `list`, `search`, `customer`."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.blocks import ticket_list_blocks, ticket_list_text
from bot.blocks.lists import lines_to_sections, ticket_line
from bot.commands.base import CommandContext, CommandReply, Invocation, UsageError, Verb
from bot.commands.tokens import Token, email_address, plain_words, user_mention
from bot.commands.views import ticket_summary
from bot.text import escape_mrkdwn
from bot.text.markdown import escape_markdown
from store import queries
from store.actions.tickets import LABEL_QUOTES
from store.models import Customer, Label, Status, Ticket, utcnow

PAGE_SIZE = 20
HISTORY_SIZE = 10
SEARCH_WORDS = 30
_PAGE = re.compile(r"^page:(\d{1,6})$")
# Quotes as typed, and as keyboards and Slack's editor curl them (“…”, „…“, «…», ‘…’); a phrase
# is quoted with double ones (a single one is also an apostrophe: "don't").
_QUOTES = '"“”„«»‘’'
_SEARCH_TERM = re.compile(r'["“”„«»]([^"“”„«»]*)["“”„«»]|(\S+)')


def _page_offset(inv: Invocation, *, anywhere: bool = False) -> tuple[list[Token], int]:
    """The arguments without their `page:N`, and the offset it means. A search's text runs up to
    it, so there it comes last; `list` filters are words in any order, and so is its page."""
    args = list(inv.args)
    places = range(len(args)) if anywhere else range(max(len(args) - 1, 0), len(args))
    for index in places:
        match = _PAGE.match(args[index].word)
        if match is None:
            continue
        page = int(match.group(1))
        if page < 1:
            raise UsageError("Pages count from 1.")
        return args[:index] + args[index + 1 :], (page - 1) * PAGE_SIZE
    return args, 0


def _next_page(inv: Invocation, args: list[Token], offset: int) -> str:
    """The command that shows the next page, as the person would type it."""
    words = [f"!{inv.verb}" if inv.in_thread else f"/desk {inv.verb}", *(token.raw for token in args)]
    return f"Next page: `{' '.join(words)} page:{offset // PAGE_SIZE + 2}`"


def _listing(
    ctx: CommandContext, inv: Invocation, args: list[Token], page: queries.Page[Ticket], title: str
) -> CommandReply:
    summaries = [ticket_summary(ticket, ctx.workspace_url) for ticket in page.items]
    blocks = ticket_list_blocks(summaries, title=title, total=page.total, now=utcnow(), offset=page.offset)
    if page.offset + len(page.items) < page.total:
        blocks += lines_to_sections([_next_page(inv, args, page.offset)])
    return CommandReply(
        ticket_list_text(summaries, title=title, total=page.total, offset=page.offset), blocks=blocks
    )


def _list_filter(ctx: CommandContext, args: list[Token]) -> tuple[queries.TicketFilter, str]:
    # Filters combine: each one narrows the list, and `status:` words add up (`status:open
    # status:resolved`). Two that no ticket can meet at once are refused rather than answered
    # with an empty list, and so is a second label, which would otherwise replace the first.
    wanted_statuses: list[str] = []
    assignee: str | None = None
    unassigned = False
    label: str | None = None
    words: list[str] = []
    for token in args:
        word = token.word
        if word == "mine":
            assignee = ctx.user_id
            words.append("assigned to you")
        elif word == "unassigned":
            unassigned = True
            words.append("unassigned")
        elif word.startswith("label:") and word.removeprefix("label:").strip(LABEL_QUOTES):
            # `label:"bug"` is the label bug, as `label 1 +"bug"` adds it: quotes are no part of a name.
            named = word.removeprefix("label:").strip(LABEL_QUOTES)
            if label is not None and named != label:
                raise UsageError("One `label:` at a time.")
            if label is None:
                words.append(f"labelled {escape_mrkdwn(named)}")
            label = named
        elif word.startswith("status:"):
            wanted = word.removeprefix("status:")
            if wanted != "all" and wanted not in {status.value for status in Status}:
                raise UsageError(
                    f"`{str(token)[:40]}`: the statuses are open, pending, resolved, closed, all."
                )
            if wanted not in wanted_statuses:
                wanted_statuses.append(wanted)
        else:
            raise UsageError(f"I can't filter by `{str(token)[:40]}`.")
    if assignee is not None and unassigned:
        raise UsageError("A ticket cannot be both `mine` and `unassigned`: give one of them.")
    statuses: tuple[str, ...] = queries.ACTIVE
    if "all" in wanted_statuses:
        statuses = ()
    elif wanted_statuses:
        statuses = tuple(wanted_statuses)
    which = " and ".join(statuses) if statuses else "All"
    title = f"*{which.capitalize()} tickets*" + (f", {', '.join(words)}" if words else "")
    where = queries.TicketFilter(
        statuses=statuses, assignee_slack_id=assignee, unassigned=unassigned, label=label
    )
    return where, title


def run_list(ctx: CommandContext, inv: Invocation) -> CommandReply:
    args, offset = _page_offset(inv, anywhere=True)
    where, title = _list_filter(ctx, args)
    with ctx.desk.db.read() as session:
        if where.label and session.scalar(select(Label.id).where(Label.name == where.label)) is None:
            # A typo must not read as an empty queue.
            raise UsageError(f"There is no label named `{where.label[:40]}`: see `labels`.")
        page = queries.list_tickets(session, where, limit=PAGE_SIZE, offset=offset)
        return _listing(ctx, inv, args, page, title)


def search_terms(text: str) -> list[str]:
    """What to look for: each word, and each quoted phrase as one term (its words in that order).

    People quote what they search for, with straight quotes or the curly ones their keyboard or
    Slack puts in; quotes are never part of what they mean, so a quoted word is the word alone.
    """
    terms: list[str] = []
    for match in _SEARCH_TERM.finditer(text):
        phrase, word = match.group(1), match.group(2)
        if phrase is not None:
            terms.append(" ".join(phrase.split()))
        else:
            terms.append(word.strip(_QUOTES))
    return [term for term in terms if term]


def run_search(ctx: CommandContext, inv: Invocation) -> CommandReply:
    args, offset = _page_offset(inv)
    if not args:
        raise UsageError("Search for what?")
    text = plain_words(inv.text[args[0].start : args[-1].start + len(args[-1].raw)]).strip()
    terms = search_terms(text)
    if not terms:
        raise UsageError("Search for what?")
    if len(terms) > SEARCH_WORDS:
        # Each term is a condition of its own: a pasted paragraph would run past Slack's 3 s.
        raise UsageError(f"Search for at most {SEARCH_WORDS} words.")
    with ctx.desk.db.read() as session:
        page = queries.search_tickets(
            session, terms, body_spelling=escape_markdown, limit=PAGE_SIZE, offset=offset
        )
        return _listing(ctx, inv, args, page, f"*Tickets matching* “{escape_mrkdwn(text[:100])}”")


def _find_customer(session: Session, token: Token) -> tuple[Customer | None, str]:
    mention = user_mention(token)
    user_id = mention[0] if mention is not None else None
    if user_id is None and token.word.startswith("@"):
        # A typed @handle Slack did not turn into a mention: looked up by name, as `assign` does.
        profile = queries.slack_user_by_name(session, str(token))
        if profile is None:
            raise UsageError(f"I don't know who `{str(token)[:40]}` is: mention them with @.")
        user_id = profile.user_id
    if user_id is not None:
        customer = queries.customer_by_slack_user(session, user_id)
        if customer is None:
            # Someone first known by email may be the same person in Slack.
            profile = queries.slack_user(session, user_id)
            if profile is not None and profile.email:
                customer = queries.customer_by_email(session, profile.email)
        return customer, f"<@{user_id}>"
    address = email_address(token)
    if address is None:
        raise UsageError(f"`{str(token)[:60]}` is neither an email address nor a @mention.")
    return queries.customer_by_email(session, address), escape_mrkdwn(address)


def _customer_lines(session: Session, customer: Customer, ctx: CommandContext) -> list[str]:
    contact = [escape_mrkdwn(customer.email)] if customer.email else []
    if customer.slack_user_id:
        contact.append(f"<@{customer.slack_user_id}>")
    lines = [f"*{escape_mrkdwn(customer.name)}*" + (f" ({', '.join(contact)})" if contact else "")]
    organization = customer.organization
    if organization is not None:
        size = queries.organization_size(session, organization.id)
        others = f", {size - 1} other customer{'s' if size != 2 else ''}" if size > 1 else ""
        lines.append(f"Organization: {escape_mrkdwn(organization.name)}{others}")
    lines.append(f"Customer since {customer.created_at:%Y-%m-%d}")
    history = queries.customer_tickets(session, customer, limit=HISTORY_SIZE)
    lines.append(f"*Tickets* ({history.total}):" if history.total else "No tickets yet.")
    now = utcnow()
    lines.extend(ticket_line(ticket_summary(ticket, ctx.workspace_url), now) for ticket in history.items)
    if history.total > len(history.items):
        lines.append(f"…and {history.total - len(history.items)} older.")
    return lines


def run_customer(ctx: CommandContext, inv: Invocation) -> CommandReply:
    inv.expect(1, 1)
    with ctx.desk.db.read() as session:
        customer, shown = _find_customer(session, inv.args[0])
        if customer is None:
            return CommandReply(f"No customer {shown} yet: they have never written to the desk.")
        return CommandReply("\n".join(_customer_lines(session, customer, ctx)))


VERBS = (
    Verb("list", run_list, "[mine|unassigned|label:x|status:y] [page:N]", takes_ticket=False),
    Verb("search", run_search, "<text> [page:N]", takes_ticket=False, aliases=("find",)),
    Verb("customer", run_customer, "<email|@user>", takes_ticket=False),
)
