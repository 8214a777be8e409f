"""Answers to one person through a request's `response_url` (a shortcut, a card control)."""

from __future__ import annotations

import logging

import aiohttp
from slack_sdk.webhook.async_client import AsyncWebhookClient

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_SECONDS = 10


async def answer_privately(response_url: str, text: str) -> None:
    """Post `text` for the asker alone, at most once; an answer that cannot be sent is logged.

    slack_sdk's default retry handler sends again after a connection error, though Slack may have
    shown the answer already: the asker would read it twice. Losing it costs less, since what it
    confirms (a ticket opened, a change refused) is in the thread or unchanged on the card.
    """
    client = AsyncWebhookClient(response_url, timeout=ANSWER_TIMEOUT_SECONDS, retry_handlers=[])
    try:
        await client.send(text=text, response_type="ephemeral", replace_original=False)
    except (aiohttp.ClientError, TimeoutError) as error:
        log.warning("could not answer through the response_url: %s", error)
