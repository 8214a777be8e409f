"""Ticket lists: ``/desk list`` and ``/desk search`` answers, and the App Home sections."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.blocks.data import TicketSummary
from bot.blocks.format import age, count, truncate, user_mention, word
from bot.text import slack_link

SECTION_LIMIT = 3000
SUBJECT_LIMIT = 80
NOTHING_HERE = "Nothing here."
NO_RESULTS = "No tickets match."
PAGE_PAST_END = "No tickets on this page: {total} in all, from page 1."
PAGE_NOTE = "Showing {first}–{last} of {total}."
PAGE_NOTE_MORE = "Showing {first}–{last} of {total}: narrow the list to see the rest."


def ticket_line(ticket: TicketSummary, now: datetime) -> str:
    """``#42 Printer on fire · Open · High · @alice · 3d`` with the subject linking to the thread."""
    subject = truncate(ticket.subject.strip() or "(no subject)", SUBJECT_LIMIT)
    shown = slack_link(ticket.permalink or "", subject, ours=True)
    parts = [f"*#{ticket.number}* {shown}", word(ticket.status)]
    if ticket.priority in ("high", "urgent"):
        parts.append(word(ticket.priority))
    parts.append(user_mention(ticket.assignee_user_id))
    parts.append(age(ticket.created_at, now))
    return " · ".join(parts)


def lines_to_sections(lines: Sequence[str]) -> list[dict[str, Any]]:
    """Lines packed into as few mrkdwn sections as fit (a block per ticket would soon reach
    Slack's 50-block limit)."""
    texts: list[str] = []
    for line in lines:
        line = truncate(line, SECTION_LIMIT)
        if texts and len(texts[-1]) + 1 + len(line) <= SECTION_LIMIT:
            texts[-1] += "\n" + line
        else:
            texts.append(line)
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in texts]


def page_note(offset: int, shown: int, total: int) -> str:
    """``Showing 1–20 of 57.``"""
    if total == 0:
        return NO_RESULTS
    if shown == 0:
        # A page past the last one: tickets do match, so "no match" would read as an empty queue.
        return PAGE_PAST_END.format(total=count(total))
    first, last = offset + 1, offset + shown
    template = PAGE_NOTE_MORE if last < total else PAGE_NOTE
    return template.format(first=count(first), last=count(last), total=count(total))


def ticket_list_blocks(
    tickets: Sequence[TicketSummary],
    *,
    title: str,
    total: int,
    now: datetime,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The answer to ``/desk list``/``search``: a title, one line per ticket, and
    ``Showing 1–20 of 57.``. ``title`` is mrkdwn (e.g. "*Open tickets, unassigned*")."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(title, 3000)}}
    ]
    blocks.extend(lines_to_sections([ticket_line(ticket, now) for ticket in tickets]))
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": page_note(offset, len(tickets), total)}],
        }
    )
    return blocks


def ticket_list_text(tickets: Sequence[TicketSummary], *, title: str, total: int, offset: int = 0) -> str:
    """The fallback text of a list answer."""
    return f"{title} — {page_note(offset, len(tickets), total)}"
