"""The App Home tab: the staff member's queue at a glance, and a few metrics."""

from __future__ import annotations

from typing import Any

from bot.blocks.data import HomeView, Metric, TicketSummary
from bot.blocks.format import age, context_line, count, truncate
from bot.blocks.lists import NOTHING_HERE, lines_to_sections, ticket_line

HOME_TITLE = "Service desk"
SECTION_MINE = "Your open tickets"
SECTION_UNASSIGNED = "Unassigned"
SECTION_WAITING = "Waiting longest for a reply"
SECTION_RECENT = "Recently changed"
SECTION_METRICS = "Metrics"
HOME_FOOTER = "Type `/desk help` for the commands. Each ticket links to its thread."
OUTSIDER_TEXT = (
    "This tab shows the support team's queue, to the members of the triage channel. "
    "To ask for help, write in your help channel or email support."
)
MAX_TICKETS_PER_SECTION = 10  # a home view holds at most 100 blocks
MAX_METRIC_FIELDS = 10  # a section holds at most 10 fields


def _ticket_section(
    title: str,
    tickets: tuple[TicketSummary, ...],
    view: HomeView,
    *,
    waiting: bool = False,
    total: int | None = None,
    more: str = "more: `/desk list`",
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}
    ]
    shown = tickets[:MAX_TICKETS_PER_SECTION]
    if not shown:
        blocks.append(context_line(NOTHING_HERE))
        return blocks
    lines = []
    for ticket in shown:
        line = ticket_line(ticket, view.now)
        if waiting and ticket.waiting_since is not None:
            line += f" · waiting {age(ticket.waiting_since, view.now)}"
        lines.append(line)
    total = max(total or 0, len(tickets))
    if total > len(shown):
        lines.append(f"…and {count(total - len(shown))} {more}")
    blocks.extend(lines_to_sections(lines))
    return blocks


def _metrics(metrics: tuple[Metric, ...]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": SECTION_METRICS, "emoji": True}}
    ]
    if not metrics:
        blocks.append(context_line(NOTHING_HERE))
        return blocks
    for start in range(0, len(metrics), MAX_METRIC_FIELDS):
        fields = [
            {"type": "mrkdwn", "text": truncate(f"*{metric.label}*\n{metric.value}", 2000)}
            for metric in metrics[start : start + MAX_METRIC_FIELDS]
        ]
        blocks.append({"type": "section", "fields": fields})
    return blocks


def home_view(view: HomeView) -> dict[str, Any]:
    """The ``views.publish`` view for ``app_home_opened``."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": HOME_TITLE, "emoji": True}},
        context_line(HOME_FOOTER),
    ]
    blocks += _ticket_section(SECTION_MINE, view.my_open, view, total=view.my_open_total)
    blocks += _ticket_section(SECTION_UNASSIGNED, view.unassigned, view, total=view.unassigned_total)
    # No list command shows who waits: the count alone tells how long the line is.
    blocks += _ticket_section(
        SECTION_WAITING,
        view.oldest_waiting,
        view,
        waiting=True,
        total=view.waiting_total,
        more="more waiting",
    )
    blocks += _ticket_section(SECTION_RECENT, view.recently_changed, view)
    blocks += _metrics(view.metrics)
    return {"type": "home", "blocks": blocks[:100]}


def outsider_home_view() -> dict[str, Any]:
    """The home for someone who is not staff: the queue is not theirs to see, and a view published
    while they were staff must not stay on their tab."""
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": HOME_TITLE, "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": OUTSIDER_TEXT}},
        ],
    }
