"""Slack delivery: one performer per `slack.*` outbox kind.

Each performer reads what it needs from the store when it runs (so edits made before delivery are
what is sent), makes its Slack calls through `SlackCalls` (paced, errors turned into outcomes) and
an `Attempt` (every post and upload made effectively once), and returns the outcome the worker
settles. Whatever a post produced that the store must know (the card's ts, a copy's ts, file ids)
is written by the outcome's `apply`, in the transaction that marks the row done.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.card import card_blocks, card_text
from bot.blocks.format import context_line
from bot.blocks.messages import customer_ack
from bot.commands.views import thread_link
from bot.delivery.attempt import POSTED_DIGEST, Attempt
from bot.delivery.calls import CHANNEL_REFUSALS, SlackCalls, Stop
from bot.delivery.rate_gate import RateGate
from bot.delivery.reads import (
    CardSnapshot,
    FileToSend,
    MessageSnapshot,
    StaffIdentity,
    TicketThreads,
    card_update_on_its_own,
    customers_in_channel,
    longer_names,
    posted_parts,
    read_card,
    read_message,
    read_threads,
    record_card_posted_again,
    record_copy,
    record_triage_thread,
)
from bot.delivery.texts import (
    FILES_REFUSED,
    OVERFLOW_NOTE,
    customer_header,
    empty_files_line,
    files_refused_line,
    files_sent,
    link_ticket_number,
    note_header,
    origin_notice,
)
from bot.home import workspace_url
from bot.outcomes import Done, Fail, Outcome, Retry
from bot.slack_users import SlackProfile, cached_profile, profile_from_api, store_profile
from bot.text import SlackMessagePayload, message_payloads
from bot.text.mentions import with_mentions
from mail.links import raw_message_url
from store.actions.customers import name_slack_customer
from store.actions.messages import copy_digest
from store.context import Desk
from store.intake_keys import link_secret
from store.models import Delivery, Direction, Visibility, utcnow
from store.outbox import (
    TRIAGE_RECHECK_MAX,
    TRIAGE_RECHECK_MIN,
    TRIAGE_UNREACHABLE,
    TRIAGE_UNREACHABLE_POST,
    WAITING_FOR_CARD,
    WAITING_FOR_CARD_RECHECK,
    Kind,
    OutboxItem,
    triage_lane,
)

log = logging.getLogger(__name__)

Performer = Callable[[OutboxItem], Awaitable[Outcome]]
Perform = Callable[[Attempt], Awaitable[Outcome]]

NO_TICKET = Fail("the ticket no longer exists", tell_thread=False)
NO_MESSAGE = Fail("the message no longer exists", tell_thread=False)
# Its card was refused (a card still on its way holds the lane): not a failure of this row, which
# goes once the operator has the card sent again; a wait, not an attempt.
NO_TRIAGE_THREAD = Retry(WAITING_FOR_CARD, delay=WAITING_FOR_CARD_RECHECK, count_attempt=False)
NO_ORIGIN_THREAD = Fail("the ticket has no customer Slack thread")
GONE = frozenset({"message_not_found"})
# The rows posted (or edited, or marked: a reply's receipt) in the triage channel: a refusal of
# that channel keeps them.
TRIAGE_KINDS = frozenset(
    kind.value for kind in (Kind.CARD, Kind.THREAD_POST, Kind.THREAD_LINE, Kind.DESK_NOTICE, Kind.REACTION)
)
FILE_GONE = frozenset({"file_not_found", "file_deleted"})


class SlackDelivery:
    def __init__(self, desk: Desk, client: AsyncWebClient, *, gate: RateGate | None = None) -> None:
        self.desk = desk
        self.calls = SlackCalls(client, gate or RateGate(pacing=desk.settings.slack_pacing))
        self._link_secret: bytes | None = None
        # Why the triage channel last refused a new card (logged once), until one goes up again.
        self._triage_refused: str | None = None

    @property
    def client(self) -> AsyncWebClient:
        return self.calls.client

    def performers(self) -> dict[str, Performer]:
        table: dict[Kind, Perform] = {
            Kind.CARD: self.card,
            Kind.THREAD_POST: self.thread_post,
            Kind.THREAD_LINE: self.thread_line,
            Kind.ORIGIN_ACK: self.origin_ack,
            Kind.ORIGIN_POST: self.origin_post,
            Kind.ORIGIN_LINE: self.origin_line,
            Kind.MIRROR_UPDATE: self.mirror_update,
            Kind.MIRROR_DELETE: self.mirror_delete,
            Kind.REACTION: self.reaction,
            Kind.DESK_NOTICE: self.desk_notice,
            Kind.PROFILE: self.profile_lookup,
        }
        return {kind.value: self._performer(perform) for kind, perform in table.items()}

    def _performer(self, perform: Perform) -> Performer:
        async def run(item: OutboxItem) -> Outcome:
            attempt = Attempt(self.desk.db, self.calls, self.desk.files, item)
            try:
                outcome = await perform(attempt)
            except Stop as stop:
                outcome = stop.outcome
            if item.kind in TRIAGE_KINDS:
                outcome = await self._kept_for_triage(item, outcome)
            return await attempt.with_progress(outcome)

        return run

    async def token_works(self) -> bool:
        """auth.test: does the bot token work (again)?"""
        try:
            data = await self.calls.call("auth.test", lambda: self.client.auth_test())
        except Stop:
            return False
        return bool(data.get("ok"))

    # ----- the triage thread -----

    async def card(self, attempt: Attempt) -> Outcome:
        item = attempt.item
        if item.ticket_id is None:
            return NO_TICKET
        snapshot = await asyncio.to_thread(read_card, self.desk.db, item.ticket_id)
        if snapshot is None:
            return NO_TICKET
        threads = snapshot.threads
        text, blocks = card_text(snapshot.view), card_blocks(snapshot.view)
        if threads.triage_channel and threads.triage_ts:
            if item.lane == triage_lane(item.ticket_id):
                # Queued behind the thread's posts while the first card was being posted: run
                # here, a 429 on chat.update (a method of its own) would hold them all back.
                return Done(
                    result={"moved": "to the card's lane"}, apply=card_update_on_its_own(item.ticket_id)
                )
            return await self._update_card(attempt, snapshot)
        # Not posted yet: it goes to the triage channel configured now, even if the ticket was opened
        # (and its card kept, refused) while another one was; its thread follows it there.
        channel = self.desk.settings.triage_channel or threads.triage_channel
        if not channel:
            return Fail("no triage channel is configured (SERVICEDESK_TRIAGE_CHANNEL)", tell_thread=False)
        ts = await attempt.post(channel, None, 0, last_step=True, text=text, blocks=blocks)
        return Done(result={"ts": ts}, apply=record_triage_thread(threads.id, channel, ts))

    async def _kept_for_triage(self, item: OutboxItem, outcome: Outcome) -> Outcome:
        """A post or card edit in the triage channel refused because of the channel itself
        (archived, gone, the app removed from it): kept, not failed. Failed, a new ticket stayed
        invisible to staff after the channel was fixed, and an existing ticket's thread lost the
        customer's message for good (the line saying so could not be posted either); kept, each
        goes up in its thread's order once the channel takes posts again, and /healthz, `servicedesk
        check` and `servicedesk outbox` name the problem meanwhile. Logged once, not once per row."""
        channel = self.desk.settings.triage_channel
        if not isinstance(outcome, Fail) or outcome.error not in CHANNEL_REFUSALS:
            if isinstance(outcome, Done) and self._triage_refused is not None:
                log.info("the triage channel %s takes posts again", channel)
                self._triage_refused = None
            return outcome
        if item.kind == Kind.REACTION.value and item.payload.get("channel") != channel:
            return outcome  # a mark in a customer's channel: not the triage channel's to hold
        threads = await self._threads(item)
        if threads is not None and threads.triage_ts and threads.triage_channel != channel:
            # A thread left in an earlier triage channel (SERVICEDESK_TRIAGE_CHANNEL changed since):
            # fixing the configured channel will not bring it back, so the row fails as any refusal.
            return outcome
        if self._triage_refused != outcome.error:
            log.warning(
                "the triage channel %s refuses posts (%s): new tickets' cards and the posts of their "
                "threads are kept and posted once it is fixed; `servicedesk check` says what to do",
                channel,
                outcome.error,
            )
            self._triage_refused = outcome.error
        waited = utcnow() - item.created_at if item.created_at is not None else timedelta(0)
        step = min(max(waited / 10, TRIAGE_RECHECK_MIN), TRIAGE_RECHECK_MAX)
        delay = step * random.uniform(0.5, 1.0)  # rows refused together do not come back together
        new_card = item.kind == Kind.CARD.value and item.lane == triage_lane(item.ticket_id or 0)
        prefix = TRIAGE_UNREACHABLE if new_card else TRIAGE_UNREACHABLE_POST
        # Not counted: the refusal is a known outcome, so the next attempt need not look before
        # posting, and the row's deadline does not fail it while the channel is being fixed.
        return Retry(f"{prefix} ({channel}: {outcome.error})", delay=delay, count_attempt=False)

    async def _update_card(self, attempt: Attempt, snapshot: CardSnapshot) -> Outcome:
        """Edit the card in place; one deleted in Slack goes up again in its thread (which stays the
        ticket's: its ts is the ticket's, deleted or not) and is the one edited from then on.
        Failing instead left staff with no card to triage from, and a failed row for every change."""
        threads = snapshot.threads
        assert threads.triage_channel and threads.triage_ts
        channel, thread_ts = threads.triage_channel, threads.triage_ts
        in_thread = snapshot.card_in_thread_ts is not None
        text, blocks = card_text(snapshot.view), card_blocks(snapshot.view, in_thread=in_thread)
        ts = snapshot.card_in_thread_ts or thread_ts
        data = await self.calls.call(
            "chat.update",
            lambda: self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks),
            ok_errors=GONE,
        )
        if data.get("ok"):
            return Done(result={"ts": ts})
        log.info("the card of #%s was deleted in Slack; posting it again in its thread", threads.number)
        blocks = card_blocks(snapshot.view, in_thread=True)
        posted = await attempt.post(channel, thread_ts, 0, last_step=True, text=text, blocks=blocks)
        return Done(result={"ts": posted}, apply=record_card_posted_again(threads.id, channel, posted))

    async def thread_post(self, attempt: Attempt) -> Outcome:
        """A customer's message (or a /desk note) copied into the triage thread, files included."""
        message = await self._message(attempt.item)
        if message is None:
            return NO_MESSAGE
        if message.deleted:
            return Done(result={"skipped": "deleted before it was copied"})
        threads = message.threads
        if not (threads.triage_channel and threads.triage_ts):
            return NO_TRIAGE_THREAD
        header = _triage_header(message, await self._original_url(message))
        payloads = message_payloads(_with_empty_files(message), header=header)
        # A customer's Slack message can be edited or deleted while its copy is posted; an email, a
        # web form message or a /desk note cannot, so their copies keep no digest to follow.
        changeable = message.direction == Direction.INBOUND and message.source == "slack"
        digest = copy_digest(message.body_markdown) if changeable else None
        first = await self._post_all(
            attempt,
            threads.triage_channel,
            threads.triage_ts,
            payloads,
            files_follow=bool(message.uploads),
            digest=digest,
        )
        file_ids = await _upload_after(
            attempt, first, threads.triage_channel, threads.triage_ts, message.uploads, where="this thread"
        )
        result = {"ts": first}
        if digest:
            result[POSTED_DIGEST] = attempt.posted_digest(digest)
        return Done(result=result, apply=record_copy(message.id, threads.triage_channel, first, file_ids))

    async def thread_line(self, attempt: Attempt) -> Outcome:
        threads = await self._threads(attempt.item)
        if threads is None:
            return NO_TICKET
        if not (threads.triage_channel and threads.triage_ts):
            return NO_TRIAGE_THREAD
        text = await self._link_other_thread(
            str(attempt.item.payload.get("text") or ""), attempt.item.payload.get("about")
        )
        ts = await attempt.post(threads.triage_channel, threads.triage_ts, 0, last_step=True, text=text)
        return Done(result={"ts": ts})

    async def _link_other_thread(self, text: str, about: object) -> str:
        """The line with the other ticket it names (`#17`) as a link to that ticket's thread. The
        link is built from the workspace URL (auth.test, asked once); without it, or before the
        other ticket has a thread, the number stays plain text: the line is never held up."""
        if not isinstance(about, dict):
            return text
        ticket_id, number = about.get("ticket_id"), about.get("number")
        if not isinstance(ticket_id, int) or not isinstance(number, int):
            return text
        other = await asyncio.to_thread(read_threads, self.desk.db, ticket_id)
        if other is None or not (other.triage_channel and other.triage_ts):
            return text
        base = await workspace_url(self.client)
        if base is None:
            return text
        return link_ticket_number(text, number, thread_link(base, other.triage_channel, other.triage_ts))

    async def desk_notice(self, attempt: Attempt) -> Outcome:
        """A line from the desk at the top of the triage channel, about no ticket."""
        channel = self.desk.settings.triage_channel
        if not channel:
            return Fail("no triage channel is set", tell_thread=False)
        text = str(attempt.item.payload.get("text") or "")
        ts = await attempt.post(channel, None, 0, last_step=True, text=text)
        return Done(result={"ts": ts})

    async def profile_lookup(self, attempt: Attempt) -> Outcome:
        """Ask Slack again who a customer stored under their id is; a 429 or outage retries (or
        pauses) the row as any call does. Their record and their tickets' cards take the name."""
        payload = attempt.item.payload
        user_id = str(payload.get("user") or "")
        if not user_id:
            return Fail("the lookup names no one", tell_thread=False)
        data = await self.calls.call(
            "users.info",
            lambda: self.client.users_info(user=user_id),
            ok_errors=frozenset({"user_not_found", "user_not_visible"}),
        )
        if not data.get("ok") or not isinstance(data.get("user"), dict):
            return Done(result={"skipped": f"Slack does not know {user_id}: {data.get('error')}"})
        found = await asyncio.to_thread(store_profile, self.desk.db, profile_from_api(data["user"]))
        if not found.known:
            return Done(result={"skipped": "Slack has no name for them"})
        home_team = payload.get("home_team")
        cards = await asyncio.to_thread(
            self._name_customer, found, str(home_team) if isinstance(home_team, str) else None
        )
        return Done(result={"cards": cards})

    def _name_customer(self, profile: SlackProfile, home_team: str | None) -> int:
        with self.desk.db.transaction() as session:
            return name_slack_customer(
                session,
                profile.user_id,
                name=profile.full_name,
                team_id=profile.team_id,
                email=profile.email,
                home_team_id=home_team,
                team_name=profile.email_domain,
            )

    # ----- the customer's Slack thread -----

    async def origin_ack(self, attempt: Attempt) -> Outcome:
        threads = await self._threads(attempt.item)
        if threads is None:
            return NO_TICKET
        return await self._origin_notice(attempt, threads, customer_ack(threads.number))

    async def origin_line(self, attempt: Attempt) -> Outcome:
        threads = await self._threads(attempt.item)
        if threads is None:
            return NO_TICKET
        payload = attempt.item.payload
        target = payload.get("target_number")
        # A notice about a ticket this one was merged into names that ticket.
        number = int(payload.get("number") or threads.number)
        text = origin_notice(
            str(payload.get("template") or ""),
            number,
            int(target) if target is not None else None,
            [str(name) for name in payload.get("files") or ()],
        )
        return await self._origin_notice(attempt, threads, text)

    async def _origin_notice(self, attempt: Attempt, threads: TicketThreads, text: str) -> Outcome:
        if not (threads.origin_channel and threads.origin_thread_ts):
            return NO_ORIGIN_THREAD
        ts = await attempt.post(
            threads.origin_channel,
            threads.origin_thread_ts,
            0,
            last_step=True,
            text=text,
            username=self.desk.settings.sender_name,
        )
        return Done(result={"ts": ts})

    async def origin_post(self, attempt: Attempt) -> Outcome:
        """A staff reply, under the staff member's name and picture, files re-uploaded."""
        message = await self._message(attempt.item)
        if message is None:
            return NO_MESSAGE
        if (
            message.deleted
            or message.delivery == Delivery.CANCELLED
            or message.visibility == Visibility.INTERNAL
        ):
            # Deleted or made a note during the undo window: nothing goes to the customer.
            return Done(result={"skipped": "withdrawn before delivery"})
        # The row's ticket names the thread: the message's own, or that of a ticket merged into it.
        threads = await self._threads(attempt.item)
        if threads is None:
            return NO_TICKET
        if not (threads.origin_channel and threads.origin_thread_ts):
            return NO_ORIGIN_THREAD
        who = await self._staff(message)
        people = await self._customers_named(message, threads.id, threads.origin_channel)
        payloads = with_mentions(message_payloads(_shown_markdown(message)), *people)
        digest = copy_digest(message.body_markdown)
        first = await self._post_all(
            attempt,
            threads.origin_channel,
            threads.origin_thread_ts,
            payloads,
            who=who,
            files_follow=bool(message.uploads),
            digest=digest,
        )
        await _upload_after(
            attempt,
            first,
            threads.origin_channel,
            threads.origin_thread_ts,
            message.uploads,
            where="the customer's Slack thread",
        )
        # Edits and deletions follow the copy in the message's own customer thread.
        own_thread = threads.id == message.threads.id
        apply = record_copy(message.id, threads.origin_channel, first, {}) if own_thread else None
        # What the copy says, so an edit that came in while it was posted reaches it when it is done.
        return Done(result={"ts": first, POSTED_DIGEST: attempt.posted_digest(digest)}, apply=apply)

    # ----- copies: edits, deletions, reactions -----

    async def mirror_update(self, attempt: Attempt) -> Outcome:
        message = await self._message(attempt.item)
        if message is None:
            return NO_MESSAGE
        copy = None if message.deleted else await self._copy(attempt.item, message)
        if copy is None:
            return Done(result={"skipped": "no copy to edit"})
        channel, parts = copy
        original = await self._original_url(message)
        header = _triage_header(message, original) if message.direction == Direction.INBOUND else None
        whole = message_payloads(_shown_markdown(message), header=header)
        if message.direction == Direction.OUTBOUND:
            # A staff reply's copy in a customer's thread: its customers stay mentioned, as posted.
            ticket_id = attempt.item.ticket_id or message.threads.id
            whole = with_mentions(whole, *await self._customers_named(message, ticket_id, channel))
        payloads = _fit(whole, len(parts))
        for index, ts in enumerate(parts):
            if index < len(payloads):
                gone = await self._update_copy(channel, ts, payloads[index])
                if gone and index > 0:
                    # An earlier, shorter edit deleted this part and those after it: the copy is
                    # the parts before it now, the last of them saying the rest did not fit.
                    await self._update_copy(channel, parts[index - 1], _fit(whole, index)[-1])
                    break
            else:
                await self._delete(channel, ts)
        return Done()

    async def mirror_delete(self, attempt: Attempt) -> Outcome:
        message = await self._message(attempt.item)
        if message is None:
            return NO_MESSAGE
        # The files a staff reply shared in the customer's thread go with it (the bot uploaded them,
        # so it may delete them); a customer's files stay in the triage thread with the ticket.
        files = [str(file_id) for file_id in attempt.item.payload.get("files") or []]
        copy = await self._copy(attempt.item, message)
        if copy is None and not files:
            return Done(result={"skipped": "no copy to delete"})
        if copy is not None:
            channel, parts = copy
            for ts in parts:
                await self._delete(channel, ts)
        for file_id in files:
            await self._delete_file(file_id)
        return Done()

    async def reaction(self, attempt: Attempt) -> Outcome:
        payload = attempt.item.payload
        channel, ts = str(payload.get("channel") or ""), str(payload.get("ts") or "")
        if not (channel and ts):
            return Fail("the reaction names no message", tell_thread=False)
        if payload.get("remove"):
            name = str(payload["remove"])
            data = await self.calls.call(
                "reactions.remove",
                lambda: self.client.reactions_remove(channel=channel, timestamp=ts, name=name),
                ok_errors=GONE | {"no_reaction"},
            )
            if data.get("error") in GONE:
                return Done(result={"skipped": "the message is gone"})
        if payload.get("add"):
            name = str(payload["add"])
            await self.calls.call(
                "reactions.add",
                lambda: self.client.reactions_add(channel=channel, timestamp=ts, name=name),
                ok_errors=GONE | {"already_reacted"},
            )
        return Done()

    # ----- helpers -----

    async def _threads(self, item: OutboxItem) -> TicketThreads | None:
        if item.ticket_id is None:
            return None
        return await asyncio.to_thread(read_threads, self.desk.db, item.ticket_id)

    async def _message(self, item: OutboxItem) -> MessageSnapshot | None:
        if item.message_id is None:
            return None
        return await asyncio.to_thread(read_message, self.desk.db, item.message_id)

    async def _post_all(
        self,
        attempt: Attempt,
        channel: str,
        thread_ts: str,
        payloads: list[SlackMessagePayload],
        *,
        who: StaffIdentity | None = None,
        files_follow: bool,
        digest: str | None = None,
    ) -> str | None:
        """Post each part in order; the first part's ts (None when there was nothing to post).

        Without files to upload after them, the last part is the row's last step (see `Attempt`).
        `digest` (of the text being posted) is kept with the first part.
        """
        identity: dict[str, Any] = {"username": who.name, "icon_url": who.icon_url} if who else {}
        first: str | None = None
        for part, payload in enumerate(payloads):
            ts = await attempt.post(
                channel,
                thread_ts,
                part,
                last_step=not files_follow and part == len(payloads) - 1,
                digest=digest if part == 0 else None,
                text=payload["text"],
                blocks=payload["blocks"],
                **identity,
            )
            first = first or ts
        return first

    async def _customers_named(
        self, message: MessageSnapshot, ticket_id: int, channel: str
    ) -> tuple[dict[str, str], list[str]]:
        """Shown name -> user id of the customers who wrote in this customer channel on the ticket
        (or the one merged into it): a reply's `@name` of one of them is a mention there. Names
        from the profile cache, which is what the reply's mentions were resolved with; staff and
        bots are never mentioned in a customer's channel. With them, the longer names of other
        people that begin with theirs (`@Bob Baker`, staff, is no mention of a customer `Bob`)."""
        users = await asyncio.to_thread(
            customers_in_channel, self.desk.db, {ticket_id, message.threads.id}, channel
        )
        people: dict[str, str] = {}
        for user in users:
            cached = await asyncio.to_thread(cached_profile, self.desk.db, user)
            profile = cached.fresh or cached.stale
            if profile is None or profile.is_staff or profile.is_bot or not profile.shown_name:
                continue
            # Two people shown alike: neither is mentioned, the name cannot say which one was meant.
            people[profile.shown_name] = "" if profile.shown_name in people else user
        named = {name: user for name, user in people.items() if user}
        return named, await asyncio.to_thread(longer_names, self.desk.db, named)

    async def _staff(self, message: MessageSnapshot) -> StaffIdentity:
        """The reply author's name and avatar: the shared profile cache (the one triage names come
        from), refreshed through users.info once it is older than PROFILE_MAX_AGE."""
        fallback = StaffIdentity(name=message.author_name or self.desk.settings.sender_name, icon_url=None)
        user_id = message.author_slack_id
        if not user_id:
            return fallback
        cached = await asyncio.to_thread(cached_profile, self.desk.db, user_id)
        if cached.fresh is not None:
            return _identity(cached.fresh)
        stale = cached.stale
        try:
            data = await self.calls.call(
                "users.info",
                lambda: self.client.users_info(user=user_id),
                ok_errors=frozenset({"user_not_found", "user_not_visible"}),
            )
        except Stop as stop:
            if stale is not None:
                return _identity(stale)  # a renamed person keeps their old name a little longer
            if isinstance(stop.outcome, Fail):
                # Slack refuses the lookup for good (a missing scope, ...): the reply still goes,
                # under the name the store has, rather than failing for want of a picture.
                return fallback
            raise  # nothing to show yet: the row is retried (or paused) as the call's outcome says
        if not data.get("ok") or not isinstance(data.get("user"), dict):
            return _identity(stale) if stale is not None else fallback
        found = await asyncio.to_thread(store_profile, self.desk.db, profile_from_api(data["user"]))
        return _identity(found) if found.shown_name != found.user_id else fallback

    async def _original_url(self, message: MessageSnapshot) -> str:
        """A signed link to an email's original .eml (the thread shows it trimmed), if the desk
        has a public URL; empty otherwise."""
        public_url = self.desk.settings.public_url
        if not (public_url and message.raw_sha256):
            return ""
        if self._link_secret is None:
            self._link_secret = await asyncio.to_thread(link_secret, self.desk.db)
        return raw_message_url(public_url, self._link_secret, message.id, message.raw_sha256)

    async def _copy(self, item: OutboxItem, message: MessageSnapshot) -> tuple[str, list[str]] | None:
        """The copy a mirror row is about: its channel and the ts of its posts.

        A staff reply's row names its posts and, by its ticket, the customer thread they are in (a
        reply goes to the threads of tickets merged into its own too); a customer's message has
        one copy, in the triage thread, recorded on the message.
        """
        parts = [str(ts) for ts in item.payload.get("parts") or []]
        if parts:
            threads = await self._threads(item)
            if threads is None or not threads.origin_channel:
                return None
            return threads.origin_channel, parts
        channel = message.mirror_channel
        if not (channel and message.mirror_ts):
            return None
        return channel, await self._copy_parts(message)

    async def _copy_parts(self, message: MessageSnapshot) -> list[str]:
        kinds = (
            [Kind.THREAD_POST.value] if message.direction == Direction.INBOUND else [Kind.ORIGIN_POST.value]
        )
        parts = await asyncio.to_thread(posted_parts, self.desk.db, message.id, kinds)
        return parts or [str(message.mirror_ts)]

    async def _update_copy(self, channel: str, ts: str, payload: SlackMessagePayload) -> bool:
        """Update one post of a copy; True when it is gone (deleted, by an earlier shorter edit)."""
        data = await self.calls.call(
            "chat.update",
            lambda: self.client.chat_update(
                channel=channel, ts=ts, text=payload["text"], blocks=payload["blocks"]
            ),
            ok_errors=GONE,
        )
        return data.get("error") in GONE

    async def _delete(self, channel: str, ts: str) -> None:
        await self.calls.call(
            "chat.delete", lambda: self.client.chat_delete(channel=channel, ts=ts), ok_errors=GONE
        )

    async def _delete_file(self, file_id: str) -> None:
        await self.calls.call(
            "files.delete", lambda: self.client.files_delete(file=file_id), ok_errors=FILE_GONE
        )


async def _upload_after(
    attempt: Attempt,
    posted: str | None,
    channel: str,
    thread_ts: str,
    files: tuple[FileToSend, ...],
    *,
    where: str,
) -> dict[int, str]:
    """Upload a message's files after its text. When Slack refuses the files for good once the text
    is up (posted: its first ts), the failure says so: the text is there (a reply's customer has
    it), only the files are not, and a reason naming the whole post would have staff send it again.
    `where`: the thread the text reached, as the triage thread's line names it."""
    try:
        return await attempt.upload(channel, thread_ts, files)
    except Stop as stop:
        if posted is None or not isinstance(stop.outcome, Fail):
            raise
        detail = f" ({', '.join(file.filename for file in files)}): {stop.outcome.error}"
        refused = Fail(
            FILES_REFUSED + detail,
            tell_thread=stop.outcome.tell_thread,
            thread_line=files_refused_line(where, detail),
        )
        raise Stop(refused) from stop


def _shown_markdown(message: MessageSnapshot) -> str:
    """What a post of the message says. A staff reply of files alone names them, so that a post under
    the staff member's name and picture says who sent them (the upload itself is the app's)."""
    if message.direction == Direction.OUTBOUND and message.files and not message.body_markdown.strip():
        return files_sent([file.filename for file in message.files])
    return message.body_markdown


def _with_empty_files(message: MessageSnapshot) -> str:
    """The body, naming the attachments that hold nothing (they are not uploaded)."""
    if not message.empty_files:
        return message.body_markdown
    line = empty_files_line(message.empty_files)
    return f"{message.body_markdown}\n\n{line}" if message.body_markdown.strip() else line


def _triage_header(message: MessageSnapshot, original_url: str) -> str:
    if message.visibility == Visibility.INTERNAL:
        return note_header(message.author_name)
    return customer_header(message.author_name, message.author_email, message.source, original_url)


def _fit(payloads: list[SlackMessagePayload], slots: int) -> list[SlackMessagePayload]:
    """An edit fits into the posts the copy already has; what does not fit is marked as cut."""
    if len(payloads) <= slots:
        return payloads
    kept = payloads[:slots]
    last = kept[-1]
    # Slack's 50-block cap: the note takes the last place.
    blocks: list[dict[str, object]] = [*last["blocks"][:49], context_line(OVERFLOW_NOTE)]
    kept[-1] = SlackMessagePayload(text=last["text"], blocks=blocks)
    return kept


def _identity(profile: SlackProfile) -> StaffIdentity:
    return StaffIdentity(name=profile.shown_name, icon_url=profile.avatar_url)
