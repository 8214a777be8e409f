"""The worker loop: turns accepted input into tickets and delivers the outbox.

Each pass claims a batch of intake items (emails, Slack events) and handles them, then claims due
outbox rows and performs them concurrently; one row per lane is in flight at a time, so the posts
of one thread keep their order while other threads and channels flow. Nothing here holds a
database transaction while it talks to Slack or SMTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from bot.outcomes import Done, Fail, Outcome, Pause, Retry
from store import inbound, outbox
from store.actions.common import thread_line
from store.actions.messages import settle_delivery
from store.db import Database, StoreUnavailable
from store.models import Ticket
from store.outbox import Kind, OutboxItem
from store.service_state import set_slack_paused, slack_paused

log = logging.getLogger(__name__)


class Performer(Protocol):
    async def __call__(self, item: OutboxItem) -> Outcome: ...


class InboundHandler(Protocol):
    async def __call__(self, work: inbound.InboundWork, worker_id: str) -> None: ...


# Checks that a paused Slack token works again (auth.test); True when it does.
TokenCheck = Callable[[], Awaitable[bool]]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkerConfig:
    outbox_batch: int = 50
    inbound_batch: int = 20
    idle_sleep: float = 0.05
    max_idle_sleep: float = 0.5
    lease: timedelta = timedelta(seconds=120)
    pause_check_interval: float = 15.0


class Worker:
    def __init__(
        self,
        db: Database,
        performers: Mapping[str, Performer],
        inbound_handlers: Mapping[str, InboundHandler],
        *,
        token_check: TokenCheck | None = None,
        worker_id: str | None = None,
        config: WorkerConfig | None = None,
    ) -> None:
        self.db = db
        self.performers = dict(performers)
        self.inbound_handlers = dict(inbound_handlers)
        self.token_check = token_check
        self.worker_id = worker_id or default_worker_id()
        self.config = config or WorkerConfig()
        self._stopping = asyncio.Event()
        self._store_down = False
        self._paused = False
        self._last_pause_check = 0.0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Work until stop(); then give back whatever is still claimed."""
        idle = self.config.idle_sleep
        log.info("worker started", extra={"worker_id": self.worker_id})
        try:
            while not self._stopping.is_set():
                try:
                    busy = await self.run_once()
                    if self._store_down:
                        log.info("database reachable again; worker resumes")
                        self._store_down = False
                except StoreUnavailable as exc:
                    if not self._store_down:  # an outage is logged once, not per pass
                        log.error("worker cannot reach the database: %s", exc)
                        self._store_down = True
                    busy = False
                idle = self.config.idle_sleep if busy else min(idle * 2, self.config.max_idle_sleep)
                if not busy:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=idle)
        finally:
            try:
                await asyncio.to_thread(outbox.release, self.db, self.worker_id)
                await asyncio.to_thread(inbound.release, self.db, self.worker_id)
            except StoreUnavailable:
                log.warning("could not release claimed rows on stop; their leases will lapse")
            log.info("worker stopped", extra={"worker_id": self.worker_id})

    async def run_once(self) -> bool:
        """One pass; True when it found work."""
        handled = await self._handle_inbound()
        await self._check_pause()
        performed = await self._perform_outbox()
        return bool(handled or performed)

    # ----- intake -----

    async def _handle_inbound(self) -> int:
        kinds = frozenset(self.inbound_handlers)
        work = await asyncio.to_thread(
            inbound.claim,
            self.db,
            self.worker_id,
            limit=self.config.inbound_batch,
            lease=self.config.lease,
            kinds=kinds,
        )
        for item in work:
            handler = self.inbound_handlers[item.kind]
            try:
                await handler(item, self.worker_id)
            except StoreUnavailable:
                raise
            # The worker's boundary: one bad input must not stop the others. It is kept (failed
            # after a few attempts) with its error for an operator, never dropped.
            except Exception as exc:
                log.exception("could not handle intake item %s (%s)", item.id, item.kind)
                await asyncio.to_thread(
                    inbound.give_up_or_retry, self.db, item.id, self.worker_id, f"{type(exc).__name__}: {exc}"
                )
        return len(work)

    # ----- delivery -----

    async def _check_pause(self) -> None:
        self._paused = await asyncio.to_thread(slack_paused, self.db) is not None
        if not self._paused or self.token_check is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_pause_check < self.config.pause_check_interval:
            return
        self._last_pause_check = loop.time()
        if await self.token_check():
            log.info("Slack token works again; Slack delivery resumes")
            await asyncio.to_thread(set_slack_paused, self.db, None)
            self._paused = False

    async def _perform_outbox(self) -> int:
        kinds = frozenset(self.performers)
        if self._paused:
            kinds = frozenset(k for k in kinds if k not in outbox.SLACK_KINDS)
        if not kinds:
            return 0
        items = await asyncio.to_thread(
            outbox.claim_due,
            self.db,
            self.worker_id,
            limit=self.config.outbox_batch,
            lease=self.config.lease,
            kinds=kinds,
        )
        if items:
            await asyncio.gather(*(self._perform(item) for item in items))
        return len(items)

    async def _perform(self, item: OutboxItem) -> None:
        performer = self.performers[item.kind]
        try:
            outcome = await performer(item)
        # Same boundary as above: a performer bug becomes a retried row with its error kept.
        except Exception as exc:
            log.exception("delivery %s (%s) raised", item.id, item.kind)
            outcome = Retry(f"{type(exc).__name__}: {exc}")
        await asyncio.to_thread(self._settle, item, outcome)

    def _settle(self, item: OutboxItem, outcome: Outcome) -> None:
        extra = {"row_id": item.id, "kind": item.kind, "ticket_id": item.ticket_id}
        if isinstance(outcome, Pause):
            if not slack_paused(self.db):
                log.error("Slack delivery paused: %s", outcome.error, extra=extra)
            set_slack_paused(self.db, outcome.error)
            with self.db.transaction() as session:
                outbox.schedule_retry(
                    session, item.id, self.worker_id, outcome.error, delay=timedelta(0), count_attempt=False
                )
            return
        with self.db.transaction() as session:
            if isinstance(outcome, Done):
                if outbox.mark_done(session, item.id, self.worker_id, outcome.result):
                    if outcome.apply is not None:
                        outcome.apply(session)
                    if item.message_id is not None and item.kind in (Kind.EMAIL, Kind.ORIGIN_POST):
                        settle_delivery(session, item.message_id)
                return
            if isinstance(outcome, Retry):
                state = outbox.schedule_retry(
                    session,
                    item.id,
                    self.worker_id,
                    outcome.error,
                    delay=outcome.delay,
                    count_attempt=outcome.count_attempt,
                )
                if state != "failed":
                    log.info("delivery %s will be retried: %s", item.id, outcome.error, extra=extra)
                    return
                error = f"gave up after repeated failures: {outcome.error}"
            else:
                if not outbox.mark_failed(session, item.id, self.worker_id, outcome.error):
                    return
                error = outcome.error
            log.warning("delivery %s failed: %s", item.id, error, extra=extra)
            self._report_failure(
                session, item, error, tell_thread=not isinstance(outcome, Fail) or outcome.tell_thread
            )

    @staticmethod
    def _report_failure(session: Session, item: OutboxItem, error: str, *, tell_thread: bool) -> None:
        if item.message_id is not None and item.kind in (Kind.EMAIL, Kind.ORIGIN_POST):
            settle_delivery(session, item.message_id, failed_error=error)
        if not tell_thread or item.ticket_id is None or item.kind in TRIAGE_THREAD_KINDS:
            return  # a failure to post into the triage thread cannot be told there
        ticket = session.get(Ticket, item.ticket_id)
        if ticket is None:
            return
        if item.kind == Kind.EMAIL:
            to = item.payload.get("to", "the customer")
            what = f"Couldn't deliver email to {to}: {error}. Check the address, or `!cc remove {to}`."
        elif item.kind in (Kind.ORIGIN_POST, Kind.ORIGIN_LINE, Kind.ORIGIN_ACK):
            what = f"Couldn't post in the customer's Slack thread: {error}."
        else:
            what = f"A delivery failed: {error}."
        thread_line(session, ticket, what)


TRIAGE_THREAD_KINDS = frozenset({Kind.CARD, Kind.THREAD_POST, Kind.THREAD_LINE})
