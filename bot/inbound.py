"""The worker's handler for stored Slack input: events (and the "Create ticket" shortcut).

The listeners only store what Slack sends and acknowledge it; this runs in the worker, where slow
work (profiles, file downloads) is allowed. Each input is parsed into a typed object
(`bot.inbound_events`) and handed to the flow that owns it:

- messages -> `bot.inbound_messages` (customers) and `bot.inbound_triage` (staff)
- edits and deletions -> `bot.inbound_edits`
- the `ticket` reaction and the shortcut -> `bot.inbound_tickets`
- triage channel membership -> the staff list (`bot.staff`)
- the app removed from an intake channel -> a notice in the triage channel
- the App Home tab -> `bot.home.publish_home`
"""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.home import publish_home
from bot.inbound_context import Claim, InboundContext
from bot.inbound_edits import handle_deleted, handle_edited
from bot.inbound_events import (
    HomeOpened,
    MembershipChanged,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
    ReactionAdded,
    RemovedFromChannel,
    TicketShortcut,
    home_team_of,
    parse_payload,
)
from bot.inbound_messages import handle_posted
from bot.inbound_tickets import handle_reaction, handle_shortcut
from bot.slack_files import SlackFileCopier
from bot.slack_users import SlackDirectory
from bot.staff import StaffDirectory
from store import inbound
from store.context import Desk
from store.outbox import enqueue_desk_notice

log = logging.getLogger(__name__)


def removed_from_intake_notice(channel: str, actor: str | None) -> str:
    """The triage channel's line when the app was removed from an intake channel (Slack mrkdwn)."""
    who = f"<@{actor}> removed" if actor else "Someone removed"
    return (
        f":warning: {who} the desk from the intake channel <#{channel}>: new requests there no longer "
        "open tickets, and replies cannot reach its customers' threads. Invite it back with "
        f"`/invite @servicedesk` in <#{channel}>."
    )


class SlackEventHandler:
    def __init__(self, desk: Desk, client: AsyncWebClient) -> None:
        settings = desk.settings
        self.context = InboundContext(
            desk=desk,
            client=client,
            directory=SlackDirectory(desk.db, client),
            staff=StaffDirectory(desk.db, client, settings.triage_channel),
            copier=SlackFileCopier(
                client,
                desk.files,
                token=settings.slack_bot_token,
                api_url=settings.slack_api_url,
                max_bytes=settings.max_message_bytes,
            ),
        )

    @property
    def staff(self) -> StaffDirectory:
        return self.context.staff

    async def handle(self, work: inbound.InboundWork, worker_id: str) -> None:
        ctx = self.context
        claim = Claim(work, worker_id)
        parsed = parse_payload(work.payload)
        home_team = await ctx.home_team(home_team_of(work.payload))
        match parsed:
            case MessagePosted(message=message):
                await handle_posted(ctx, claim, message, home_team)
            case MessageEdited():
                await handle_edited(ctx, claim, parsed, home_team)
            case MessageDeleted():
                await handle_deleted(ctx, claim, parsed)
            case ReactionAdded():
                await handle_reaction(ctx, claim, parsed, home_team)
            case TicketShortcut():
                await handle_shortcut(ctx, claim, parsed, home_team)
            case MembershipChanged():
                await self._membership(claim, parsed)
            case RemovedFromChannel():
                await self._removed(claim, parsed)
            case HomeOpened(user=user):
                await ctx.apply(claim)
                await self._publish_home(user)
            case None:
                await ctx.apply(claim)

    async def _membership(self, claim: Claim, change: MembershipChanged) -> None:
        in_triage = change.channel == self.context.triage_channel
        if in_triage:
            if change.joined:
                await self.staff.joined(change.user)
            else:
                await self.staff.left(change.user)
            log.info("%s %s the triage channel", change.user, "joined" if change.joined else "left")
        await self.context.apply(claim)
        if in_triage and not change.joined:
            # The queue published on their tab while they were staff must not stay there (Slack
            # shows the last published view as the tab opens, before app_home_opened reaches us).
            await publish_home(self.context.desk, self.context.client, change.user)

    async def _removed(self, claim: Claim, removal: RemovedFromChannel) -> None:
        """Removed from an intake channel, the desk no longer sees new requests there nor can it
        post in its customers' threads. Said at once in the triage channel: otherwise nobody
        hears of it until a post there fails, and a customer's request meanwhile gets no answer."""
        if removal.channel not in self.context.desk.settings.intake_channels:
            await self.context.apply(claim)
            return
        text = removed_from_intake_notice(removal.channel, removal.actor)
        log.warning("the app was removed from the intake channel %s by %s", removal.channel, removal.actor)
        await self.context.apply(claim, lambda session: enqueue_desk_notice(session, text))

    async def _publish_home(self, user: str) -> None:
        # The view is for staff only and reads the staff list from the cache: make it current, and
        # re-read it for someone not known as staff (they may just have joined), as `/desk` does.
        await self.staff.recheck(user)
        await publish_home(self.context.desk, self.context.client, user)
