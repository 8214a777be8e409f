"""A Slack message event's body as canonical Markdown, whichever form Slack sent it in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.text.mrkdwn import mrkdwn_to_markdown
from bot.text.resolver import MentionResolver
from bot.text.rich_text import rich_text_to_markdown


def message_markdown(message: Mapping[str, Any], resolver: MentionResolver) -> str:
    """The ``rich_text`` blocks when the message has them (every message a person writes in a
    current client), else its mrkdwn ``text`` (bots, integrations, old clients)."""
    blocks = message.get("blocks") or []
    if any(isinstance(block, dict) and block.get("type") == "rich_text" for block in blocks):
        return rich_text_to_markdown(list(blocks), resolver)
    return mrkdwn_to_markdown(str(message.get("text") or ""), resolver)
