"""The App Home tab: a staff member's queue (their open tickets, unassigned, longest waiting,
recently changed) and this week's figures, each ticket linking to its triage thread."""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import HomeView, Metric, home_view, outsider_home_view
from bot.commands.stats import duration_words, percent
from bot.commands.views import ticket_summary
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
            metrics=(
                Metric("Open or pending", str(stats.open_now)),
                Metric("Unassigned", str(stats.unassigned_now)),
                Metric(f"Opened, last {METRICS_DAYS} days", str(stats.created)),
                Metric("Median first response", duration_words(stats.first_response_median)),
                Metric("Median time to resolution", duration_words(stats.resolution_median)),
                Metric("Reopen rate", percent(stats.reopen_rate)),
            ),
            now=now,
            # The sections read at most QUEUE_LIMIT tickets: their "…and N more" counts them all.
            my_open_total=queries.list_tickets(
                session, queries.TicketFilter(assignee_slack_id=user_id), limit=0
            ).total,
            unassigned_total=queries.list_tickets(
                session, queries.TicketFilter(unassigned=True), limit=0
            ).total,
        )


async def publish_home(desk: Desk, client: AsyncWebClient, user_id: str) -> None:
    """views.publish the user's home: the queue for staff, a line saying whose tab it is for anyone
    else (someone who left the triage channel must not keep the queue they last saw)."""
    view = await asyncio.to_thread(home_data, desk, user_id, await workspace_url(client))
    if view is None:
        log.info("home for %s shows no queue: not staff", user_id)
    try:
        await client.views_publish(
            user_id=user_id, view=home_view(view) if view is not None else outsider_home_view()
        )
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
        # The tab shows what it showed before; the next app_home_opened tries again.
        log.warning("could not publish %s's home: %s", user_id, error)
