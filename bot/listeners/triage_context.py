"""Who is acting, for the triage listeners: staff or not, their name, and the workspace URL.

Staff are the members of the triage channel (`bot.staff`); someone not yet known as staff is
rechecked against Slack (rate-limited there) before being refused, so a person who just joined
the channel is not turned away by a stale cache. Names come from the shared profile cache
(`bot.slack_users`), which the commands read synchronously: the people a command mentions are
looked up first, so `assign @bob` writes "Bob Baker", not an id.

All of that runs before the command's answer, and Slack drops an answer that comes after 3 s. So the
Slack lookups share one budget (`SLACK_LOOKUP_BUDGET`); past it the command runs on what is cached:
the stored staff list, the name in the payload, ids for people not looked up yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import CommandContext
from bot.edge_threads import EDGE_POOL
from bot.home import workspace_url
from bot.listeners.command_rate import CommandRate
from bot.slack_users import SlackDirectory, SlackLookupFailed
from bot.staff import StaffDirectory
from store.context import Desk

log = logging.getLogger(__name__)

# Seconds the Slack lookups before a command may take together: the rest of Slack's 3 s is for the
# command's own transaction and the answer's way back.
SLACK_LOOKUP_BUDGET = 1.2


@dataclass(frozen=True)
class TriageSide:
    desk: Desk
    client: AsyncWebClient
    staff: StaffDirectory
    directory: SlackDirectory
    rate: CommandRate

    @classmethod
    def build(cls, desk: Desk, client: AsyncWebClient) -> TriageSide:
        """One per app, built where the listeners are registered: commands and card controls share
        its caches and each person's command rate."""
        return cls(
            desk,
            client,
            # Their cache reads answer Slack too: on the edge's threads, not behind the worker's.
            StaffDirectory(desk.db, client, desk.settings.triage_channel, executor=EDGE_POOL),
            SlackDirectory(desk.db, client, executor=EDGE_POOL),
            CommandRate(),
        )

    async def context(
        self, user_id: str, name_in_payload: str | None, mentioned_in: Iterable[str] = ()
    ) -> CommandContext:
        deadline = asyncio.get_running_loop().time() + SLACK_LOOKUP_BUDGET
        try:
            async with asyncio.timeout_at(deadline):
                is_staff = await self.staff.recheck(user_id)
        except TimeoutError:
            log.warning("staff list not rechecked in time for %s; the cached one decides", user_id)
            is_staff = await self.staff.cached(user_id)
        name = name_in_payload or user_id
        workspace: str | None = None
        unknown: frozenset[str] = frozenset()
        if is_staff:
            try:
                async with asyncio.timeout_at(deadline):
                    name = (await self.directory.profile(user_id)).shown_name
                    # Cached for the command; `assign @someone` Slack does not know is refused.
                    unknown = await self.directory.look_up_mentions([{"text": text} for text in mentioned_in])
            except SlackLookupFailed as error:
                log.warning("names not looked up, Slack is unavailable: %s", error)
            except TimeoutError:
                log.warning("names not looked up in time; the command shows ids for people not cached")
            try:
                async with asyncio.timeout_at(deadline):
                    workspace = await workspace_url(self.client)
            except TimeoutError:
                log.warning("workspace URL not known in time; links to threads are left out")
        return CommandContext(
            desk=self.desk,
            user_id=user_id,
            user_name=name,
            is_staff=is_staff,
            workspace_url=workspace,
            unknown_users=unknown,
        )
