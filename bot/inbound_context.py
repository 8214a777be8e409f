"""What the Slack intake handlers share: collaborators, the claimed item, and small helpers.

Every handler follows the same order: read what it needs from the store, ask Slack (profiles,
files) with no transaction open, then apply one store transaction that also marks the intake item
done — so an item takes effect exactly once, even if the worker dies halfway.
"""

from __future__ import annotations

import asyncio
import logging
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.inbound_events import PostedMessage
from bot.slack_files import CopiedFiles, SlackFileCopier
from bot.slack_users import SlackDirectory, SlackProfile, is_transient
from bot.staff import StaffDirectory
from bot.text import message_markdown
from store import inbound, outbox
from store.actions import (
    DeskPolicy,
    add_customer_message,
    customer_for_slack_user,
    message_by_slack_ts,
    remember_slack_edit,
    ticket_by_slack_thread,
    ticket_owning_slack_thread,
)
from store.actions.common import literal, thread_line
from store.actions.customers import look_up_slack_customer_later
from store.context import Desk
from store.models import Customer, InboundItem, InboundState, Ticket, utcnow
from store.outbox import Kind

log = logging.getLogger(__name__)
T = TypeVar("T")

SUBJECT_LENGTH = 80
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MARKUP = re.compile(r"(^\s*(?:[>#]+|[-*+]|\d+[.)])\s+)|[*_~`\\]")


@dataclass(frozen=True)
class Claim:
    """An intake item this worker holds."""

    work: inbound.InboundWork
    worker_id: str
    # An edit taken as the message it overtook: (channel, ts, the edit's ts). The message is stored
    # holding that edit, so an older edit arriving after it changes nothing.
    taken_edit: tuple[str, str, str] | None = None


@dataclass
class InboundContext:
    desk: Desk
    client: AsyncWebClient
    directory: SlackDirectory
    staff: StaffDirectory
    copier: SlackFileCopier
    _auth: dict[str, Any] | None = None

    @property
    def triage_channel(self) -> str | None:
        return self.desk.settings.triage_channel

    def is_intake_channel(self, channel: str) -> bool:
        return channel in self.desk.settings.intake_channels

    async def auth(self) -> dict[str, Any]:
        """`auth.test`, asked once per process: our team, our bot user, the workspace URL."""
        if self._auth is None:
            try:
                answer = await self.client.auth_test()
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
                log.warning("auth.test failed: %s", error)
                return {}
            self._auth = dict(answer.data) if isinstance(answer.data, dict) else {}
        return self._auth

    async def workspace_url(self) -> str | None:
        url = (await self.auth()).get("url")
        return str(url) if url else None

    async def home_team(self, fallback: str | None = None) -> str | None:
        team = (await self.auth()).get("team_id")
        return str(team) if team else fallback

    async def fetch_message(self, channel: str, ts: str) -> Mapping[str, Any] | None:
        """A message by its ts: the channel's history for a top-level one, else its thread.

        None when it cannot be read (deleted, no access); Slack being unavailable raises, so the
        event is tried again.
        """
        try:
            history = await self.client.conversations_history(
                channel=channel, latest=ts, inclusive=True, limit=1
            )
            for raw in history.get("messages") or []:
                if raw.get("ts") == ts:
                    return dict(raw)
            # From the message on (Slack may put the thread's parent first): a reply deep in a long
            # thread is on the first page too.
            replies = await self.client.conversations_replies(
                channel=channel, ts=ts, oldest=ts, inclusive=True, limit=10
            )
            for raw in replies.get("messages") or []:
                if raw.get("ts") == ts:
                    return dict(raw)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            if is_transient(error):
                raise
            log.info("could not read %s/%s: %s", channel, ts, error)
        return None

    async def read(self, query: Callable[[Session], T]) -> T:
        """A read-only look at the store, off the event loop."""

        def run() -> T:
            with self.desk.db.read() as session:
                return query(session)

        return await asyncio.to_thread(run)

    async def apply(self, claim: Claim, change: Callable[[Session], T] | None = None) -> T | None:
        """Apply `change` and mark the item done in one transaction (None: just mark it done)."""

        def run() -> T | None:
            with self.desk.db.transaction() as session:
                if not inbound.finish(session, claim.work.id, claim.worker_id):
                    # Our lease lapsed and another worker holds the item: it will apply it.
                    log.warning("intake item %s was taken over by another worker", claim.work.id)
                    return None
                result = change(session) if change is not None else None
                if claim.taken_edit is not None:
                    remember_slack_edit(session, *claim.taken_edit)
                return result

        return await asyncio.to_thread(run)

    async def markdown(self, raw: Mapping[str, Any]) -> str:
        """The message's body as canonical Markdown, mentions resolved to names."""
        resolver = await self.directory.mention_resolver([raw])
        return message_markdown(raw, resolver)


# How long after Slack could not say who a new customer is the worker asks again (then backing off
# as the answer says): a rate limit on users.info is usually over within a minute.
PROFILE_LOOKUP_DELAY = timedelta(seconds=5)


def customer_for_profile(session: Session, profile: SlackProfile, home_team: str | None) -> Customer:
    """The customer record of a Slack user: a Slack Connect user's team is their organization."""
    customer = customer_for_slack_user(
        session,
        profile.user_id,
        name=profile.full_name,
        team_id=profile.team_id,
        email=profile.email,
        home_team_id=home_team,
        team_name=profile.email_domain,
        known=profile.known,
    )
    if profile.unavailable and customer.name == profile.user_id:
        # Stored under their id while Slack could not say who they are: asked again shortly, so
        # the card and their record get their name though they may never write again.
        look_up_slack_customer_later(
            session, profile.user_id, home_team, due_at=utcnow() + PROFILE_LOOKUP_DELAY
        )
    return customer


def add_slack_customer_message(
    session: Session,
    policy: DeskPolicy,
    ticket: Ticket,
    customer: Customer,
    message: PostedMessage,
    body: str,
    copied: CopiedFiles,
    *,
    now: datetime | None = None,
) -> None:
    """A customer's Slack message on its ticket, with its files; the triage thread names any file
    that could not be copied. `now`: when it was written, for the message that opens its ticket."""
    add_customer_message(
        session,
        policy,
        ticket,
        customer=customer,
        body_markdown=body,
        source="slack",
        slack_channel=message.channel,
        slack_ts=message.ts,
        attachments=copied.attachments,
        now=now,
    )
    if copied.skipped:
        thread_line(session, ticket, skipped_files_line(copied.skipped))
    if copied.refused:
        # Staff see why in the triage thread; the sender, who believes we have the files, is told in
        # the thread they wrote in (their own ticket's, merged away or not).
        origin = ticket_owning_slack_thread(session, message.channel, message.thread_root) or ticket
        outbox.enqueue(
            session,
            Kind.ORIGIN_LINE,
            ticket_id=origin.id,
            lane=outbox.origin_lane(origin.id),
            payload={"template": "files_refused", "number": origin.number, "files": copied.refused},
        )


def subject_from(markdown: str, file_names: Sequence[str] = ()) -> str:
    """A ticket subject from the first line that says something; a file's name when none does."""
    for line in markdown.splitlines():
        plain = _MARKUP.sub("", _LINK.sub(r"\1", line)).strip()
        if plain:
            return textwrap.shorten(plain, SUBJECT_LENGTH, placeholder="…")
    if file_names:
        return textwrap.shorten(f"File: {file_names[0]}", SUBJECT_LENGTH, placeholder="…")
    return "(no subject)"


def skipped_files_line(skipped: Sequence[str]) -> str:
    """The triage-thread line naming the files of a message that were not copied, and why (the
    names are the sender's: literal text)."""
    listed = "; ".join(literal(reason) for reason in skipped)
    return f"Not every file of that message was copied into the ticket: {listed}"


# How old a message may be for an edit, deletion or reply of it to count as overtaking it.
OVERTAKE_WINDOW_SECONDS = 600.0


def holds_message(session: Session, channel: str, ts: str) -> bool:
    return message_by_slack_ts(session, channel, ts) is not None


def ticket_number_for_thread(
    session: Session, channel: str, thread_ts: str, *, follow_merges: bool = True
) -> int | None:
    """The number of the ticket a message in this thread goes to, or (`follow_merges=False`) of
    the ticket whose thread it is, merged away or not."""
    find = ticket_by_slack_thread if follow_merges else ticket_owning_slack_thread
    ticket = find(session, channel, thread_ts)
    return ticket.number if ticket is not None else None


def deleted_key(channel: str, ts: str) -> str:
    """The record of a message deleted before its own event reached us."""
    return f"slack-deleted:{channel}:{ts}"


_TS = re.compile(r"^(\d{1,12})\.(\d{1,6})$")


def posted_at(message_ts: str, arrived: datetime | None) -> datetime | None:
    """When a Slack message was written: its ts, which is Slack's clock at posting; but never later
    than its event reached the desk (`arrived`), as two clocks may disagree a little. A message
    whose event came late (Slack retries one the desk did not answer, for minutes) was still
    written when it was: the customer has waited since then."""
    match = _TS.match(message_ts)
    if match is None:
        return arrived
    seconds, fraction = match.groups()
    written = datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=int(fraction.ljust(6, "0")))
    return written if arrived is None else min(written, arrived)


def fresh(message_ts: str, event_ts: str | None) -> bool:
    """Was the message written shortly before this event (so its own event may still come)?"""
    try:
        return event_ts is not None and float(event_ts) - float(message_ts) < OVERTAKE_WINDOW_SECONDS
    except ValueError:
        return False


def record_once(session: Session, kind: str, key: str) -> bool:
    """Record that something happened to a Slack message (a command ran, it was deleted before we
    saw it); False when it had been recorded before. Kept as a finished intake item, so the one
    unique index on intake keys serves, and no worker ever claims it."""
    if seen_before(session, key):
        return False
    now = utcnow()
    session.add(
        InboundItem(
            kind=kind,
            dedupe_key=key,
            payload={},
            state=InboundState.DONE,
            attempts=1,
            received_at=now,
            processed_at=now,
        )
    )
    return True


def seen_before(session: Session, key: str) -> bool:
    return session.scalar(select(InboundItem.id).where(InboundItem.dedupe_key == key)) is not None
