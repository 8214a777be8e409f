"""Block Kit in one place: pure functions from plain data (``bot.blocks.data``) to blocks."""

from bot.blocks.card import (
    ACTION_ASSIGNEE,
    ACTION_LABELS,
    ACTION_PRIORITY,
    ACTION_STATUS,
    card_blocks,
    card_text,
    parse_ticket_number,
)
from bot.blocks.data import CardView, HomeView, Metric, TicketLinkView, TicketSummary
from bot.blocks.help import help_blocks, help_text
from bot.blocks.home import home_view, outsider_home_view
from bot.blocks.lists import ticket_list_blocks, ticket_list_text

__all__ = [
    "ACTION_ASSIGNEE",
    "ACTION_LABELS",
    "ACTION_PRIORITY",
    "ACTION_STATUS",
    "CardView",
    "HomeView",
    "Metric",
    "TicketLinkView",
    "TicketSummary",
    "card_blocks",
    "card_text",
    "help_blocks",
    "help_text",
    "home_view",
    "outsider_home_view",
    "parse_ticket_number",
    "ticket_list_blocks",
    "ticket_list_text",
]
