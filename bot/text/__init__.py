"""Slack text <-> canonical Markdown: pure functions, no Slack calls, no database."""

from bot.text.emoji import emoji_character, emojize_names
from bot.text.message import message_markdown
from bot.text.mrkdwn import mrkdwn_to_markdown
from bot.text.resolver import DictMentionResolver, MentionResolver
from bot.text.rich_text import rich_text_to_markdown
from bot.text.split import mrkdwn_to_plain
from bot.text.to_slack import (
    SlackMessagePayload,
    escape_mrkdwn,
    markdown_to_mrkdwn,
    message_payloads,
    slack_link,
)

__all__ = [
    "DictMentionResolver",
    "MentionResolver",
    "SlackMessagePayload",
    "emoji_character",
    "emojize_names",
    "escape_mrkdwn",
    "markdown_to_mrkdwn",
    "message_markdown",
    "message_payloads",
    "mrkdwn_to_markdown",
    "mrkdwn_to_plain",
    "rich_text_to_markdown",
    "slack_link",
]
