"""Who is staff: the members of the triage channel, cached in `SlackUser.is_staff`.

The cache is refreshed from `conversations.members` the first time a process needs it and every
few minutes after, and kept current in between by `member_joined_channel` / `member_left_channel`.
A refresh that fails keeps the cache as it was: a Slack hiccup must not turn staff into customers
(their replies would stop going out) or customers into staff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.edge_threads import run_in
from store import queries
from store.db import Database
from store.models import SlackUser

log = logging.getLogger(__name__)

REFRESH_EVERY_SECONDS = 600.0
# A message from someone not (yet) known as staff in the triage channel forces a refresh, at most
# this often: they most likely just joined and we missed the event.
RECHECK_EVERY_SECONDS = 30.0
# Long ago: a row created only to hold `is_staff` has no profile yet, so it is fetched on first use.
_NEVER = datetime(2000, 1, 1, tzinfo=UTC)


def _mark(session: Session, user_id: str, staff: bool) -> None:
    row = session.get(SlackUser, user_id)
    if row is None:
        session.add(SlackUser(user_id=user_id, is_staff=staff, fetched_at=_NEVER))
    else:
        row.is_staff = staff


def _staff_ids(session: Session, *, lock: bool = False) -> set[str]:
    query = select(SlackUser.user_id).where(SlackUser.is_staff.is_(True))
    return set(session.scalars(query.with_for_update() if lock else query))


def _read_staff(db: Database) -> set[str]:
    with db.read() as session:
        return _staff_ids(session)


def _replace_members(db: Database, members: set[str], before: set[str]) -> None:
    """Write Slack's member list, read while the cache said `before`.

    A membership event handled while Slack was being asked (`joined` / `left`, in this process or
    another) is newer than the list: whoever it changed keeps what it said, so a person who left
    during a refresh is not made staff again by the list taken before they left (nor a person who
    just joined dropped)."""
    with db.transaction() as session:
        now = _staff_ids(session, lock=True)
        changed_meanwhile = now ^ before
        for user_id in now - members - changed_meanwhile:
            _mark(session, user_id, False)
        for user_id in members - changed_meanwhile:
            _mark(session, user_id, True)


def _set_one(db: Database, user_id: str, staff: bool) -> None:
    with db.transaction() as session:
        _mark(session, user_id, staff)


def _read_one(db: Database, user_id: str) -> bool:
    with db.read() as session:
        return queries.is_staff(session, user_id)


class StaffDirectory:
    def __init__(
        self,
        db: Database,
        client: AsyncWebClient,
        triage_channel: str | None,
        *,
        refresh_every: float = REFRESH_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        executor: Executor | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.triage_channel = triage_channel
        self.executor = executor  # for its database reads and writes; None: the loop's default
        self.refresh_every = refresh_every
        self.clock = clock
        self._refreshed_at: float | None = None
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Future[bool] | None = None

    async def refresh(self) -> bool:
        """Read the triage channel's members into the cache; False (cache kept) if Slack failed.

        One read at a time, shared by whoever asks meanwhile; a caller that stops waiting (a command
        out of time for Slack's 3 s) does not cancel it, so a slow Slack still refreshes the list
        for the next command instead of being asked again and abandoned each time."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._read_members())
        return await asyncio.shield(self._refreshing)

    async def _read_members(self) -> bool:
        if not self.triage_channel:
            return False
        members: set[str] = set()
        cursor: str | None = None
        # What the cache says before Slack is asked: a change made meanwhile is newer than the list.
        before = await run_in(self.executor, _read_staff, self.db)
        try:
            while True:
                answer = await self.client.conversations_members(
                    channel=self.triage_channel, limit=1000, cursor=cursor
                )
                members.update(str(member) for member in answer.get("members") or [])
                cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            reason = error.response.get("error") if isinstance(error, SlackApiError) else repr(error)
            log.warning("could not read the triage channel's members (%s); staff list kept", reason)
            # Try again at the next recheck rather than hammering Slack on every event.
            self._refreshed_at = self.clock() - self.refresh_every + RECHECK_EVERY_SECONDS
            return False
        await run_in(self.executor, _replace_members, self.db, members, before)
        self._refreshed_at = self.clock()
        log.info("staff list refreshed: %d members of the triage channel", len(members))
        return True

    async def ensure_fresh(self) -> None:
        async with self._lock:
            if self._refreshed_at is None or self.clock() - self._refreshed_at >= self.refresh_every:
                await self.refresh()

    async def is_staff(self, user_id: str | None) -> bool:
        if not user_id:
            return False
        await self.ensure_fresh()
        return await run_in(self.executor, _read_one, self.db, user_id)

    async def cached(self, user_id: str) -> bool:
        """What the cache says now, without asking Slack (when there is no time to ask)."""
        return await run_in(self.executor, _read_one, self.db, user_id)

    async def recheck(self, user_id: str) -> bool:
        """Is this person staff, refreshing first if the list may be out of date?"""
        if await self.is_staff(user_id):
            return True
        async with self._lock:
            if self._refreshed_at is None or self.clock() - self._refreshed_at >= RECHECK_EVERY_SECONDS:
                await self.refresh()
        return await run_in(self.executor, _read_one, self.db, user_id)

    async def joined(self, user_id: str) -> None:
        await run_in(self.executor, _set_one, self.db, user_id, True)

    async def left(self, user_id: str) -> None:
        await run_in(self.executor, _set_one, self.db, user_id, False)
