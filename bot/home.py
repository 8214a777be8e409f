"""The App Home tab: a staff member's queue (their open tickets, unassigned, longest waiting,
recently changed) and this week's figures, each ticket linking to its triage thread."""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from datetime import timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import HomeView, home_view, outsider_home_view
from bot.commands.stats import home_metrics
from bot.commands.views import ticket_summary
from bot.slack_errors import retry_after
from store import queries
from store.context import Desk
from store.models import utcnow

log = logging.getLogger(__name__)

SECTION_SIZE = 10
# The queue sections say "…and N more": read enough to count them honestly, but bounded.
QUEUE_LIMIT = 100
METRICS_DAYS = 7

# auth.test's workspace URL, asked once per client: it makes thread links without a
# chat.getPermalink call per ticket shown.
_workspace_urls: weakref.WeakKeyDictionary[AsyncWebClient, str] = weakref.WeakKeyDictionary()


async def workspace_url(client: AsyncWebClient) -> str | None:
    known = _workspace_urls.get(client)
    if known is not None:
        return known
    try:
        answer = await client.auth_test()
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
        log.warning("auth.test failed, lists are shown without thread links: %s", error)
        return None
    url = answer.get("url")
    if not isinstance(url, str) or not url:
        return None
    _workspace_urls[client] = url
    return url


def home_data(desk: Desk, user_id: str, workspace: str | None) -> HomeView | None:
    """The home's contents, or None for someone who is not staff (the queue is not theirs to see)."""
    now = utcnow()
    with desk.db.read() as session:
        if not queries.is_staff(session, user_id):
            return None
        stats = queries.desk_stats(session, now - timedelta(days=METRICS_DAYS), now)
        return HomeView(
            user_id=user_id,
            my_open=tuple(
                ticket_summary(t, workspace)
                for t in queries.my_open_tickets(session, user_id, limit=QUEUE_LIMIT)
            ),
            unassigned=tuple(
                ticket_summary(t, workspace) for t in queries.unassigned_tickets(session, limit=QUEUE_LIMIT)
            ),
            oldest_waiting=tuple(
                ticket_summary(t, workspace, waiting_since=since)
                for t, since in queries.waiting_tickets(session, limit=SECTION_SIZE)
            ),
            recently_changed=tuple(
                ticket_summary(t, workspace) for t in queries.recently_changed(session, limit=SECTION_SIZE)
            ),
            metrics=home_metrics(stats, METRICS_DAYS),
            now=now,
            # The sections read at most QUEUE_LIMIT tickets: their "…and N more" counts them all.
            my_open_total=queries.list_tickets(
                session, queries.TicketFilter(assignee_slack_id=user_id), limit=0
            ).total,
            unassigned_total=queries.list_tickets(
                session, queries.TicketFilter(unassigned=True), limit=0
            ).total,
            waiting_total=queries.waiting_count(session),
        )


async def publish_home(desk: Desk, client: AsyncWebClient, user_id: str) -> None:
    """views.publish the user's home: the queue for staff, a line saying whose tab it is for anyone
    else (someone who left the triage channel must not keep the queue they last saw).

    A publish Slack failed for a while (a 429, a 5xx, no answer) is tried again in the background
    with backoff and jitter, a few times: the tab would otherwise keep what it showed before, and
    after someone left the triage channel that is the queue they must no longer see. Publishing
    replaces the whole tab, so a repeat of a call that did land changes nothing.
    """
    retries = _pending_retries.setdefault(client, {})
    earlier = retries.pop(user_id, None)
    if earlier is not None:
        earlier.cancel()  # this publish reads the desk afresh: the earlier retry is out of date
    wait = await _publish_once(desk, client, user_id, attempt=1)
    if wait is not None:
        retries[user_id] = asyncio.create_task(
            _retry_publish(desk, client, user_id, wait), name=f"home-retry-{user_id}"
        )


# Attempts at one publish, the first included; the waits between them are about 2, 4 and 8 s.
HOME_ATTEMPTS = 4
HOME_BACKOFF_SECONDS = 2.0
# Slack's answers that say "not now" rather than "never" (as bot.delivery.calls retries them).
HOME_RETRY_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_pending_retries: weakref.WeakKeyDictionary[AsyncWebClient, dict[str, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary()
)


def _backoff(attempt: int) -> float:
    return HOME_BACKOFF_SECONDS * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)


async def _retry_publish(desk: Desk, client: AsyncWebClient, user_id: str, wait: float) -> None:
    try:
        for attempt in range(2, HOME_ATTEMPTS + 1):
            await asyncio.sleep(wait)
            next_wait = await _publish_once(desk, client, user_id, attempt=attempt)
            if next_wait is None:
                return
            wait = next_wait
        log.warning("gave up publishing %s's home after %d attempts", user_id, HOME_ATTEMPTS)
    finally:
        retries = _pending_retries.get(client, {})
        if retries.get(user_id) is asyncio.current_task():
            del retries[user_id]


async def _publish_once(desk: Desk, client: AsyncWebClient, user_id: str, *, attempt: int) -> float | None:
    """One publish; the seconds to wait before trying it again, or None (published, or refused for
    good)."""
    view = await asyncio.to_thread(home_data, desk, user_id, await workspace_url(client))
    if view is None:
        log.info("home for %s shows no queue: not staff", user_id)
    try:
        await client.views_publish(
            user_id=user_id, view=home_view(view) if view is not None else outsider_home_view()
        )
    except SlackApiError as error:
        response = error.response
        code = str(response.get("error") or "") if isinstance(response.data, dict) else ""
        if response.status_code == 429 or code == "ratelimited":
            wait: float | None = max(retry_after(response.headers, 1.0), _backoff(attempt))
        elif response.status_code >= 500 or not code or code in HOME_RETRY_ERRORS:
            wait = _backoff(attempt)
        else:
            wait = None  # refused for good (a bad view, a missing scope): the log says why
        log.warning("could not publish %s's home: %s", user_id, code or f"HTTP {response.status_code}")
        return wait
    except (aiohttp.ClientError, TimeoutError) as error:
        log.warning("could not publish %s's home: %s", user_id, type(error).__name__)
        return _backoff(attempt)
    return None
