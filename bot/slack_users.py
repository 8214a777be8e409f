"""Who a Slack id is: profiles cached in `SlackUser`, channel names and user group handles.

The store keeps message bodies with mentions already resolved to names, so the worker resolves
every id a message mentions *before* converting it (`mention_resolver`), and `bot.text` then
reads the answers synchronously. Profiles live in the database so every process (and the
delivery performers, which post staff replies under the staff member's name and avatar) shares
one cache; channel names and user group handles are cheap enough to keep in memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import IntegrityError

from bot.edge_threads import run_in
from bot.text import DictMentionResolver
from store.db import Database
from store.models import SlackUser, utcnow

log = logging.getLogger(__name__)

PROFILE_MAX_AGE = timedelta(hours=12)
NAMES_MAX_AGE_SECONDS = 3600.0
# Most people one message's mentions make the desk ask Slack about, and how many at a time.
MENTION_LOOKUPS = 25
MENTION_LOOKUPS_AT_ONCE = 5

# Errors that say "try again later", as opposed to "this id means nothing to Slack".
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

_MRKDWN_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_MRKDWN_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^>]*)?>")
_MRKDWN_USERGROUP = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>")


class SlackLookupFailed(Exception):
    """Slack could not answer a lookup for now (rate limit, outage); the caller retries later."""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", 200)
        return status == 429 or status >= 500 or error.response.get("error") in TRANSIENT_ERRORS
    return isinstance(error, aiohttp.ClientError | TimeoutError)


@dataclass(frozen=True)
class SlackProfile:
    """What the desk knows of a Slack user. `known` is False when Slack had nothing to say."""

    user_id: str
    team_id: str | None = None
    handle: str = ""
    real_name: str = ""
    display_name: str = ""
    email: str | None = None
    avatar_url: str | None = None
    is_bot: bool = False
    is_staff: bool = False
    known: bool = True
    # A stand-in made while Slack could not be asked (rate limit, outage, a paused token): the
    # person may well be known, so whoever stores it asks again later.
    unavailable: bool = False

    @property
    def shown_name(self) -> str:
        """As Slack shows them in a message: display name, real name when that is empty."""
        return self.display_name or self.real_name or self.handle or self.user_id

    @property
    def full_name(self) -> str:
        """For records (a customer's name): real name first."""
        return self.real_name or self.display_name or self.handle or self.user_id

    @property
    def email_domain(self) -> str | None:
        """Their email's domain: the name of their organization when it is a Slack team we have no
        name for."""
        return self.email.rpartition("@")[2] if self.email else None


def profile_from_row(row: SlackUser) -> SlackProfile:
    return SlackProfile(
        user_id=row.user_id,
        team_id=row.team_id,
        handle=row.name,
        real_name=row.real_name,
        display_name=row.display_name,
        email=row.email,
        avatar_url=row.avatar_url,
        is_bot=row.is_bot,
        is_staff=row.is_staff,
        known=bool(row.name or row.real_name or row.display_name),
    )


def profile_from_api(user: Mapping[str, Any]) -> SlackProfile:
    """A `users.info` user object. Slack Connect users of another team carry their own team_id."""
    profile = user.get("profile") or {}
    avatar = next((profile[key] for key in ("image_192", "image_72", "image_48") if profile.get(key)), None)
    return SlackProfile(
        user_id=str(user.get("id", "")),
        team_id=user.get("team_id") or profile.get("team"),
        handle=str(user.get("name") or ""),
        real_name=str(profile.get("real_name") or user.get("real_name") or ""),
        display_name=str(profile.get("display_name") or ""),
        # Present only with users:read.email and when the user's organization shows it.
        email=(str(profile["email"]).lower() if profile.get("email") else None),
        avatar_url=avatar,
        is_bot=bool(user.get("is_bot")),
    )


def store_profile(db: Database, profile: SlackProfile) -> SlackProfile:
    """Upsert the cached row; whether the person is staff is kept (bot.staff owns that bit)."""
    try:
        return _upsert_profile(db, profile)
    except IntegrityError:
        # Another task cached the same person at the same moment (PostgreSQL): update theirs.
        return _upsert_profile(db, profile)


def _upsert_profile(db: Database, profile: SlackProfile) -> SlackProfile:
    with db.transaction() as session:
        row = session.get(SlackUser, profile.user_id)
        if row is None:
            row = SlackUser(user_id=profile.user_id, is_staff=False)
            session.add(row)
        row.team_id = profile.team_id
        row.name = profile.handle[:200]
        row.real_name = profile.real_name[:200]
        row.display_name = profile.display_name[:200]
        row.email = profile.email
        row.avatar_url = profile.avatar_url
        row.is_bot = profile.is_bot
        row.fetched_at = utcnow()
        session.flush()
        return profile_from_row(row)


@dataclass(frozen=True)
class CachedProfile:
    """What the cache holds for one person: `fresh` to use as is, else `stale` to fall back on
    while Slack cannot answer (both None: nothing known, or only that they are staff)."""

    fresh: SlackProfile | None
    stale: SlackProfile | None


def cached_profile(db: Database, user_id: str, max_age: timedelta = PROFILE_MAX_AGE) -> CachedProfile:
    """The cache's answer for `user_id`: fresh when fetched less than `max_age` ago."""
    with db.read() as session:
        row = session.get(SlackUser, user_id)
        if row is None:
            return CachedProfile(None, None)
        profile = profile_from_row(row)
        # A row made only to mark staff has no profile yet: fetched long ago, so never fresh.
        if not profile.known:
            return CachedProfile(None, None)
        if utcnow() - row.fetched_at < max_age:
            return CachedProfile(profile, profile)
        return CachedProfile(None, profile)


def _walk_elements(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            if isinstance(value, list | Mapping):
                yield from _walk_elements(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_elements(item)


def mentioned_ids(messages: Iterable[Mapping[str, Any]]) -> tuple[set[str], set[str], set[str]]:
    """(users, channels, user groups) a message mentions, in its rich text or its mrkdwn text."""
    users: set[str] = set()
    channels: set[str] = set()
    groups: set[str] = set()
    for message in messages:
        for element in _walk_elements(message.get("blocks") or []):
            kind = element.get("type")
            if kind == "user" and element.get("user_id"):
                users.add(str(element["user_id"]))
            elif kind == "channel" and element.get("channel_id"):
                channels.add(str(element["channel_id"]))
            elif kind == "usergroup" and element.get("usergroup_id"):
                groups.add(str(element["usergroup_id"]))
        text = str(message.get("text") or "")
        users.update(_MRKDWN_USER.findall(text))
        channels.update(_MRKDWN_CHANNEL.findall(text))
        groups.update(_MRKDWN_USERGROUP.findall(text))
    return users, channels, groups


class SlackDirectory:
    """Profiles, channel names and user group handles, each fetched once and then cached."""

    def __init__(
        self,
        db: Database,
        client: AsyncWebClient,
        *,
        profile_max_age: timedelta = PROFILE_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        executor: Executor | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.executor = executor  # for its database reads and writes; None: the loop's default
        self.profile_max_age = profile_max_age
        self.clock = clock
        self._channels: dict[str, tuple[str, float]] = {}
        self._usergroups: dict[str, str] = {}
        self._usergroups_at: float | None = None

    # ----- people -----

    async def profile(self, user_id: str) -> SlackProfile:
        """The cached profile, fetched from `users.info` when missing or old.

        A user Slack does not know (deleted, or hidden from us) gets a stand-in named by id, so a
        message is still stored. When Slack is unavailable a stale profile is good enough; with
        none at all the lookup fails and the caller's work is retried.
        """
        cached = await run_in(self.executor, cached_profile, self.db, user_id, self.profile_max_age)
        if cached.fresh is not None:
            return cached.fresh
        try:
            answer = await self.client.users_info(user=user_id)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            if is_transient(error):
                if cached.stale is not None:
                    return cached.stale
                raise SlackLookupFailed(f"users.info for {user_id}: {describe_error(error)}") from error
            log.warning("users.info for %s failed: %s", user_id, describe_error(error))
            return cached.stale or SlackProfile(user_id=user_id, known=False)
        user = answer.get("user")
        if not isinstance(user, Mapping):
            return SlackProfile(user_id=user_id, known=False)
        return await run_in(self.executor, store_profile, self.db, profile_from_api(user))

    async def _mentioned_profiles(self, users: list[str]) -> list[SlackProfile]:
        """The profiles of the people a message mentions: from the cache, and at most
        MENTION_LOOKUPS of the others from Slack, MENTION_LOOKUPS_AT_ONCE at a time. A pasted list
        of hundreds of mentions would otherwise spend Slack's whole `users.info` allowance (about
        100 a minute) at once, and for that minute every other lookup (a new customer's name, a
        staff reply's name and picture) would be refused. The rest read as their ids."""
        cached = await asyncio.gather(
            *(run_in(self.executor, cached_profile, self.db, u, self.profile_max_age) for u in users)
        )
        # Those the desk knows nothing of first; then those to refresh (a stale name will do).
        unknown = [u for u, c in zip(users, cached, strict=True) if c.fresh is None and c.stale is None]
        stale = [u for u, c in zip(users, cached, strict=True) if c.fresh is None and c.stale is not None]
        allowed = set((unknown + stale)[:MENTION_LOOKUPS])
        if len(unknown) > MENTION_LOOKUPS:
            log.info("%d mentions not looked up (read as ids)", len(unknown) - MENTION_LOOKUPS)
        at_once = asyncio.Semaphore(MENTION_LOOKUPS_AT_ONCE)

        async def one(user_id: str, found: CachedProfile) -> SlackProfile:
            if found.fresh is not None:
                return found.fresh
            if user_id not in allowed:
                return found.stale or SlackProfile(user_id=user_id, known=False)
            async with at_once:
                return await self.profile_or_standin(user_id)

        return list(await asyncio.gather(*(one(u, c) for u, c in zip(users, cached, strict=True))))

    async def look_up_mentions(self, messages: Iterable[Mapping[str, Any]]) -> frozenset[str]:
        """Before a command runs (it reads names from the store's cache): fetch everyone and
        everything the messages mention. Returns the people Slack has no one for (deleted,
        mistyped, or hidden from the app), whom a command must not store; none when Slack cannot
        say (then SlackLookupFailed is logged and the names read as ids)."""
        mentioning = list(messages)
        await self.mention_resolver(mentioning)
        try:
            profiles = await asyncio.gather(*(self.profile(u) for u in sorted(mentioned_ids(mentioning)[0])))
        except SlackLookupFailed as error:
            log.warning("mentions not checked, Slack is unavailable: %s", error)
            return frozenset()
        return frozenset(profile.user_id for profile in profiles if not profile.known)

    async def profile_or_standin(self, user_id: str) -> SlackProfile:
        """The profile, or a stand-in named by id while Slack cannot answer: a message is stored
        now rather than retried into failure; a customer stored so is looked up again later
        (`Kind.PROFILE`)."""
        try:
            return await self.profile(user_id)
        except SlackLookupFailed as error:
            log.warning("storing without a profile: %s", error)
            return SlackProfile(user_id=user_id, known=False, unavailable=True)

    # ----- channels and user groups -----

    async def channel_name(self, channel_id: str) -> str:
        cached = self._channels.get(channel_id)
        if cached is not None and self.clock() - cached[1] < NAMES_MAX_AGE_SECONDS:
            return cached[0]
        try:
            answer = await self.client.conversations_info(channel=channel_id)
            name = str((answer.get("channel") or {}).get("name") or channel_id)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            # A channel of another organization, or one the bot cannot see: its id still reads.
            log.info("conversations.info for %s failed: %s", channel_id, describe_error(error))
            name = cached[0] if cached is not None else channel_id
        self._channels[channel_id] = (name, self.clock())
        return name

    async def usergroup_handle(self, usergroup_id: str) -> str:
        if self._usergroups_at is None or self.clock() - self._usergroups_at >= NAMES_MAX_AGE_SECONDS:
            self._usergroups_at = self.clock()
            try:
                answer = await self.client.usergroups_list(include_disabled=True)
                self._usergroups = {
                    str(group.get("id")): str(group.get("handle") or group.get("name") or group.get("id"))
                    for group in answer.get("usergroups") or []
                }
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
                # Without usergroups:read (or on a free plan) groups simply read as their ids.
                log.info("usergroups.list failed: %s", describe_error(error))
        return self._usergroups.get(usergroup_id, usergroup_id)

    async def mention_resolver(self, messages: Iterable[Mapping[str, Any]]) -> DictMentionResolver:
        """A resolver that knows every id the messages mention (fetched concurrently)."""
        user_ids, channel_ids, group_ids = mentioned_ids(list(messages))
        users = sorted(user_ids)
        channels = sorted(channel_ids)
        groups = sorted(group_ids)
        # A mention that cannot be resolved now reads as its id rather than holding up the message.
        profiles = await self._mentioned_profiles(users)
        channel_names = await asyncio.gather(*(self.channel_name(c) for c in channels))
        handles = [await self.usergroup_handle(g) for g in groups]
        return DictMentionResolver(
            users={p.user_id: p.shown_name for p in profiles},
            channels=dict(zip(channels, channel_names, strict=True)),
            usergroups=dict(zip(groups, handles, strict=True)),
        )


def describe_error(error: BaseException) -> str:
    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or error)
    return f"{type(error).__name__}: {error}"
