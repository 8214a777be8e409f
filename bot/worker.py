"""The worker: turns accepted input into tickets and delivers the outbox.

Two loops share one asyncio loop. The intake loop claims accepted emails and Slack events and
handles them one by one. The delivery loop keeps up to `max_in_flight` outbox rows in flight, each
as its own task: a row that waits (a slow upload, a channel paced by Slack's limit) holds one slot,
never the rows behind it. One row per lane is claimable at a time, so the posts of one thread keep
their order while other threads and channels flow.

The loops are woken by new work: `wake_on(db.wakeups)` tells them, after the commit, of every
intake item and outbox row this process writes (SMTP intake, Slack events, commands, the worker's
own ingest and retries, and a row that leaves its lane announcing the lane's next row), so a new
ticket's card, and its thread post after it, are claimed at once. Freed slots are refilled only
when the last claim left due rows behind (it took as many as there were free slots), and then
together: once a good share of them is free, or a moment after the first frees up, not once per
finished row. A claim costs a transaction, and most finished rows leave nothing behind them. The
poll stays as the fallback, backing off from `idle_sleep` to `max_idle_sleep`:
it finds what other processes commit (another `serve`, `--role web` apart from `--role worker`;
there is no cross-process wake-up yet), rows due later than this process knows of, and leases
that lapsed.

Rows are held under a lease the worker renews while it works on them; a worker that dies lets its
leases lapse (and a worker starting on the same machine gives a dead neighbour's rows back at
once). On stop the worker claims nothing new, lets what is in flight finish for a moment, and gives
back the rest. When the database goes away the worker logs it once, keeps the outcomes it could not
record, and records them when the database is back. Nothing here holds a database transaction
while it talks to Slack or SMTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from bot.outcomes import Outcome, Pause, Retry
from bot.worker_ids import default_worker_id, holder_pid, local_prefix, process_alive
from bot.worker_pace import EdgeFirst
from bot.worker_settle import describe, log_fields, settle, settle_pause
from bot.worker_wake import WorkSignal, loop_time_of
from store import inbound, outbox, worker_presence
from store.db import Database, StoreUnavailable
from store.models import utcnow
from store.outbox import OutboxItem
from store.service_state import set_slack_paused, slack_paused
from store.wakeups import Notice, Topic, Wakeups, on_loop

log = logging.getLogger(__name__)

__all__ = [
    "InboundHandler",
    "Performer",
    "TokenCheck",
    "Worker",
    "WorkerConfig",
    "default_worker_id",
]


# Performs one claimed row (a Slack post, an email) and says what came of it.
Performer = Callable[[OutboxItem], Awaitable[Outcome]]


class InboundHandler(Protocol):
    async def __call__(self, work: inbound.InboundWork, worker_id: str) -> None: ...


# Checks that a paused Slack token works again (auth.test); True when it does.
TokenCheck = Callable[[], Awaitable[bool]]


# After a pass that failed on a bug: wait this long, so a lasting fault does not flood the log.
FAILED_PASS_WAIT = 5.0
# A dead worker's presence row is deleted once this old.
PRESENCE_FORGET_AFTER = timedelta(hours=1)


@dataclass
class WorkerConfig:
    outbox_batch: int = 50  # most rows one claim takes
    max_in_flight: int = 32  # rows performed at once by run()
    inbound_batch: int = 20
    # The poll, the fallback for work no wake-up announces (see the module's docstring).
    idle_sleep: float = 0.05
    max_idle_sleep: float = 0.5
    # Freed slots are refilled together (when due rows were left behind): when this share of them
    # is free, or this long after the first one freed. Each refill is a claim query, and rows often
    # finish one after another.
    refill_share: float = 0.25
    refill_delay: float = 0.05
    lease: timedelta = timedelta(seconds=60)
    # Intake items are not renewed while handled (a big attachment can take a while): a longer lease.
    inbound_lease: timedelta = timedelta(seconds=120)
    heartbeat: float = 15.0  # how often held leases are renewed
    # How often a worker on PostgreSQL says it is alive and counts the others, to keep its share of
    # Slack's limits (store/worker_presence.py); a worker not seen for `presence_window` is not counted.
    presence_interval: float = 5.0
    presence_window: timedelta = timedelta(seconds=16)
    pause_state_interval: float = 1.0  # how often the shared "Slack paused" flag is read
    pause_check_interval: float = 15.0  # the longest wait between auth.test checks while paused
    drain_timeout: float = 2.5  # on stop: how long rows in flight may finish before they are given back
    # A Slack row given back mid-call (on stop, or a dead worker's) waits this long before it is
    # tried again, so the call's late effect has landed when the next attempt looks for it: the
    # wait a timed-out call's retry gets (bot.delivery.calls.LATE_EFFECT_TIMEOUTS × the 15 s call
    # timeout, bot.app.SLACK_CALL_TIMEOUT_SECONDS).
    slack_settles_in: timedelta = timedelta(seconds=45)
    # Edge first (bot/worker_pace.py): while intake items arrive faster than this a second, the
    # worker's units of work (an intake item, a delivery) take turns at most `busy_worker_rate` a
    # second, so the edges answer first. Steady traffic (tens a second) never reaches it. At 5 turns
    # a second the worker keeps about a twentieth of the CPU during a burst (an email's ingest is
    # the costliest unit, ~12 ms); at 20 it took a third of it, and the 250s waited for it.
    busy_intake_rate: float = 50.0
    busy_worker_rate: float = 5.0


class Worker:
    def __init__(
        self,
        db: Database,
        performers: Mapping[str, Performer],
        inbound_handlers: Mapping[str, InboundHandler],
        *,
        token_check: TokenCheck | None = None,
        on_workers: Callable[[int], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        worker_id: str | None = None,
        config: WorkerConfig | None = None,
    ) -> None:
        self.db = db
        self.performers = dict(performers)
        self.inbound_handlers = dict(inbound_handlers)
        self.token_check = token_check
        # Told how many workers deliver (this one included), so Slack's limits are shared.
        self.on_workers = on_workers
        # Told when the worker stops, so that rows waiting for a rate-limit slot go back at once.
        self.on_stop = on_stop
        self.worker_id = worker_id or default_worker_id()
        self.config = config or WorkerConfig()
        self._stopping = asyncio.Event()
        self._intake = WorkSignal()
        self._pace = EdgeFirst(self.config.busy_intake_rate, self.config.busy_worker_rate)
        self._outbox = WorkSignal()
        self._freed_at: float | None = None  # loop time the first slot freed since the last refill
        # The last claim may have left due rows behind: it took as many rows as there were free
        # slots (so this holds whenever no slot is free). Only then is a freed slot worth a claim;
        # any other new work is announced.
        self._backlog = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        # Outcomes reached while the database was away, recorded once it is back.
        self._unsettled: list[tuple[OutboxItem, Outcome]] = []
        self._store_down = False
        # A claim the database committed but whose answer an outage swallowed leaves rows held under
        # this worker's id that it does not know of: they would wait out their lease (a minute or
        # two) after the database is back. After an outage, whichever loop saw it, each loop gives
        # back what it holds but does not know of before it claims again.
        self._outbox_claims_unknown = False
        self._intake_claims_unknown = False
        self._paused = False
        self._pause_lock = asyncio.Lock()
        self._pause_read_at = float("-inf")
        self._token_checked_at = float("-inf")
        self._token_wait = self._first_token_wait()
        # The paused token's check (auth.test) under way: it runs beside the delivery loop, so a
        # slow answer (up to the client's timeout) does not hold back claims, mail above all.
        self._token_task: asyncio.Task[bool] | None = None

    def _first_token_wait(self) -> float:
        return min(1.0, self.config.pause_check_interval)

    def stop(self) -> None:
        self._stopping.set()
        if self.on_stop is not None:
            self.on_stop()
        self._intake.poke()
        self._outbox.poke()

    # ----- being woken -----

    def wake_on(self, wakeups: Wakeups) -> Callable[[], None]:
        """Be woken by the work committed through `wakeups` (call on the worker's event loop).

        Returns the unsubscribe. Notices arrive on the committing thread; they are handed to this
        loop with call_soon_threadsafe.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        return wakeups.subscribe(on_loop(loop, self.notice))

    def notice(self, notice: Notice) -> None:
        """Work was committed (runs on the worker's loop): wake the loop that claims it."""
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time()
        wall = utcnow()
        for topic, times in notice.due.items():
            signal = self._intake if topic == Topic.INTAKE else self._outbox
            for due in times:
                signal.announce(loop_time_of(due, now, wall), now)
        if notice.arrivals:
            self._pace.arrived(notice.arrivals)  # mails or events an edge of this process accepted

    # ----- the long-running loops -----

    async def run(self) -> None:
        """Work until stop(); then finish briefly or give back whatever is still held."""
        log.info("worker %s started", self.worker_id, extra={"worker_id": self.worker_id})
        await self._reclaim_orphans()
        intake = asyncio.create_task(self._intake_loop())
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        # One worker on SQLite; on PostgreSQL any number share Slack's limits.
        presence = asyncio.create_task(self._presence_loop()) if self._shares_limits() else None
        try:
            await self._delivery_loop()
        finally:
            if self._token_task is not None:
                self._token_task.cancel()  # a stop does not wait for Slack's answer
                await asyncio.gather(self._token_task, return_exceptions=True)
            await self._finish(intake)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._give_back()
            if presence is not None:
                # On stop the loop ends by itself, after any check-in under way: one committed after
                # the check-out would count this worker for a while longer.
                if not self._stopping.is_set():
                    presence.cancel()
                await asyncio.gather(presence, return_exceptions=True)
                await self._check_out()
            log.info("worker %s stopped", self.worker_id, extra={"worker_id": self.worker_id})

    async def _delivery_loop(self) -> None:
        loop = asyncio.get_running_loop()
        idle = self.config.idle_sleep
        while not self._stopping.is_set():
            # Before the claim: work announced while it runs makes the next wait return at once.
            self._outbox.begin_pass(loop.time())
            self._freed_at = None
            started, more, failed = 0, False, False
            try:
                await self._settle_kept()
                await self._give_back_unknown_rows()
                await self._check_pause()
                started, more = await self._fill()
                self._store_back()
            except StoreUnavailable as exc:
                self._store_lost(exc)
                idle = min(idle * 2, self.config.max_idle_sleep)  # the poll, backing off, finds it back
            # The worker's boundary: a bug in one pass must not end delivery for the process (the
            # service would run on without a worker). Logged with its traceback; the loop goes on.
            except Exception:
                log.exception("delivery pass failed; trying again")
                idle, failed = FAILED_PASS_WAIT, True
            else:
                idle = self.config.idle_sleep if started else min(idle * 2, self.config.max_idle_sleep)
            if more:
                continue  # the claim stopped at its batch size with slots still free
            await self._wait_for_delivery(idle, woken=not failed)

    async def _wait_for_delivery(self, idle: float, *, woken: bool) -> None:
        """Until stop, or the poll's `idle` runs out, or (when `woken`) new work is due or enough
        slots are free. After a failed pass only stop ends the wait early, so a lasting fault does
        not flood the log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + idle
        while not self._stopping.is_set():
            now = loop.time()
            until = deadline
            if woken:
                if self._outbox.news:
                    return
                until = self._outbox.until(until)
                if self._freed_at is not None and self._backlog:
                    if self._free_slots() >= self._refill_slots():
                        return
                    until = min(until, self._freed_at + self.config.refill_delay)
                token_due = self._token_checked_at + self._token_wait
                # Only a check still to come: one already due waits for a pass that reaches it
                # (a pass cut short by a database outage must not make this wait return at once).
                if self._paused and self.token_check is not None and token_due > now:
                    until = min(until, token_due)
            if now >= until:
                return
            await self._outbox.sleep_until(until, now)

    async def _intake_loop(self) -> None:
        loop = asyncio.get_running_loop()
        idle = self.config.idle_sleep
        while not self._stopping.is_set():
            self._intake.begin_pass(loop.time())
            handled, failed = 0, False
            try:
                handled = await self._handle_inbound()
                self._store_back()
            except StoreUnavailable as exc:
                self._store_lost(exc)
                idle = min(idle * 2, self.config.max_idle_sleep)  # as in the delivery loop
            except Exception:  # the worker's boundary, as in the delivery loop
                log.exception("intake pass failed; trying again")
                handled, idle, failed = 0, FAILED_PASS_WAIT, True
            else:
                idle = self.config.idle_sleep if handled else min(idle * 2, self.config.max_idle_sleep)
            if handled:
                continue
            deadline = loop.time() + idle
            while not self._stopping.is_set() and not (self._intake.news and not failed):
                now = loop.time()
                until = deadline if failed else self._intake.until(deadline)
                if now >= until:
                    break
                await self._intake.sleep_until(until, now)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat)
            held = [*self._in_flight, *(item.id for item, _ in self._unsettled)]
            try:
                await asyncio.to_thread(
                    outbox.extend_leases, self.db, self.worker_id, held, self.config.lease
                )
            except StoreUnavailable as exc:
                self._store_lost(exc)
            except Exception:  # the worker's boundary: lease renewal must outlive any one failure
                log.exception("renewing leases failed; trying again")

    def _shares_limits(self) -> bool:
        return self.on_workers is not None and self.db.is_postgresql

    async def _presence_loop(self) -> None:
        assert self.on_workers is not None
        while not self._stopping.is_set():
            try:
                workers = await asyncio.to_thread(
                    worker_presence.check_in,
                    self.db,
                    self.worker_id,
                    seen_within=self.config.presence_window,
                    forget_after=PRESENCE_FORGET_AFTER,
                )
                self.on_workers(workers)
            except StoreUnavailable as exc:
                self._store_lost(exc)
            except Exception:  # the worker's boundary: counting must outlive any one failure
                log.exception("counting the workers failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.presence_interval)

    async def _check_out(self) -> None:
        # Without the database, the others stop counting this worker once its row is old.
        with contextlib.suppress(StoreUnavailable):
            await asyncio.to_thread(worker_presence.check_out, self.db, self.worker_id)

    async def run_once(self) -> bool:
        """One pass, for tests and tools: intake, then one claimed batch performed to the end."""
        handled = await self._handle_inbound()
        await self._settle_kept()
        await self._check_pause(wait_for_check=True)
        kinds = self._claimable_kinds()
        if not kinds:
            return bool(handled)
        items = await asyncio.to_thread(
            outbox.claim_due,
            self.db,
            self.worker_id,
            limit=self.config.outbox_batch,
            lease=self.config.lease,
            kinds=kinds,
        )
        await asyncio.gather(*(self._perform(item) for item in items))
        return bool(handled or items)

    # ----- intake -----

    async def _handle_inbound(self) -> int:
        kinds = frozenset(self.inbound_handlers)
        if not kinds:
            return 0
        if self._intake_claims_unknown:
            # Nothing is in hand between passes: every item held is one the outage cut off.
            released = await asyncio.to_thread(inbound.release, self.db, self.worker_id)
            self._intake_claims_unknown = False
            if released:
                log.info("took back %d intake item(s) held when the database went away", released)
        work = await asyncio.to_thread(
            inbound.claim,
            self.db,
            self.worker_id,
            limit=self.config.inbound_batch,
            lease=self.config.inbound_lease,
            kinds=kinds,
        )
        for item in work:
            if self._stopping.is_set():
                break  # the rest is given back on the way out
            handler = self.inbound_handlers[item.kind]
            await self._pace.turn()
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

    def _claimable_kinds(self) -> frozenset[str]:
        kinds = frozenset(self.performers)
        if self._paused:
            kinds = frozenset(kind for kind in kinds if kind not in outbox.SLACK_KINDS)
        return kinds

    def _free_slots(self) -> int:
        return self.config.max_in_flight - len(self._in_flight)

    def _refill_slots(self) -> int:
        """How many free slots make a refill worth its claim without waiting for more."""
        return max(1, math.ceil(self.config.max_in_flight * self.config.refill_share))

    async def _fill(self) -> tuple[int, bool]:
        """Claim as many due rows as there are free slots, and start each.

        Returns how many started, and whether slots are still free after a claim that stopped at
        its batch size (more rows may be due: claim again at once).
        """
        free = self._free_slots()
        kinds = self._claimable_kinds()
        if free <= 0 or not kinds:
            return 0, False
        limit = min(free, self.config.outbox_batch)
        items = await asyncio.to_thread(
            outbox.claim_due,
            self.db,
            self.worker_id,
            limit=limit,
            lease=self.config.lease,
            kinds=kinds,
        )
        started = 0
        for item in items:
            if item.id in self._in_flight:
                continue  # its lease lapsed while it was still being performed here: let it finish
            task = asyncio.create_task(self._perform(item), name=f"outbox-{item.id}")
            self._in_flight[item.id] = task
            task.add_done_callback(self._finished)
            started += 1
        self._backlog = len(items) >= limit
        return started, self._backlog and self._free_slots() > 0

    def _finished(self, task: asyncio.Task[None]) -> None:
        for row_id, running in list(self._in_flight.items()):
            if running is task:
                del self._in_flight[row_id]
        if self._freed_at is None:
            self._freed_at = task.get_loop().time()
        self._outbox.poke()

    async def _perform(self, item: OutboxItem) -> None:
        performer = self.performers[item.kind]
        try:
            await self._pace.turn()
            outcome = await performer(item)
        except StoreUnavailable as exc:
            outcome = Retry(str(exc))
        # The worker's boundary: a performer bug becomes a retried row with its error kept, and the
        # other rows go on.
        except Exception as exc:
            log.exception("%s raised", describe(item), extra=log_fields(item))
            outcome = Retry(f"{type(exc).__name__}: {exc}")
        try:
            await self._settle(item, outcome)
        except StoreUnavailable as exc:
            self._store_lost(exc)
            self._unsettled.append((item, outcome))

    async def _settle(self, item: OutboxItem, outcome: Outcome) -> None:
        if isinstance(outcome, Pause):
            await self._pause(item, outcome)
            return
        state = await asyncio.to_thread(settle, self.db, self.worker_id, item, outcome)
        fields = log_fields(item, outcome=state)
        if state == "failed":
            log.warning("%s failed: %s", describe(item), getattr(outcome, "error", ""), extra=fields)
        elif state == "recorded":
            log.info("%s was recorded already; the database's answer was lost", describe(item), extra=fields)
        elif state == "lost":
            log.warning(
                "%s was taken over by another worker; its outcome is dropped", describe(item), extra=fields
            )
        elif isinstance(outcome, Retry):
            # Waiting for a rate limit is routine; a failed attempt is worth an info line.
            level = logging.INFO if outcome.count_attempt else logging.DEBUG
            log.log(level, "%s will be retried: %s", describe(item), outcome.error, extra=fields)
        else:
            log.debug("%s delivered", describe(item), extra=fields)

    async def _settle_kept(self) -> None:
        while self._unsettled:
            item, outcome = self._unsettled[0]
            await self._settle(item, outcome)
            self._unsettled.pop(0)

    async def _give_back_unknown_rows(self) -> None:
        """After an outage: give back the rows held under this worker's id that are neither in
        flight nor waiting to be settled. None of them was performed, so the attempt is undone."""
        if not self._outbox_claims_unknown:
            return
        known = [*self._in_flight, *(item.id for item, _ in self._unsettled)]
        released = await asyncio.to_thread(
            outbox.release, self.db, self.worker_id, untouched=True, keep=known
        )
        self._outbox_claims_unknown = False
        if released:
            log.info("took back %d delivery row(s) claimed as the database went away", released)

    # ----- pausing Slack delivery when the token stops working -----

    async def _pause(self, item: OutboxItem, outcome: Pause) -> None:
        async with self._pause_lock:
            if not self._paused:
                await asyncio.to_thread(set_slack_paused, self.db, outcome.error)
                self._paused = True
                self._token_checked_at = asyncio.get_running_loop().time()
                self._token_wait = self._first_token_wait()
                # Logged once per worker, not per row: every Slack row would say the same.
                log.error("Slack delivery paused: %s; rows are kept until the token works", outcome.error)
        await asyncio.to_thread(settle_pause, self.db, self.worker_id, item, outcome.error)

    async def _check_pause(self, *, wait_for_check: bool = False) -> None:
        """While paused, ask now and then whether the token works again. The check runs as a task
        of its own, its answer taken by a later pass (`wait_for_check`: this one, for run_once)."""
        now = asyncio.get_running_loop().time()
        if now - self._pause_read_at >= self.config.pause_state_interval:
            self._pause_read_at = now
            # Under the lock: a read that started before this worker paused must not undo it.
            async with self._pause_lock:
                self._paused = await asyncio.to_thread(slack_paused, self.db) is not None
        if not self._paused or self.token_check is None:
            return
        if self._token_task is None:
            if now - self._token_checked_at < self._token_wait:
                return
            self._token_checked_at = now
            # Ask again soon at first, then less often: auth.test is cheap but not free.
            self._token_wait = min(self._token_wait * 2, self.config.pause_check_interval)
            self._token_task = asyncio.ensure_future(self.token_check())
            # Its answer wakes the loop: the resume need not wait for the next poll.
            self._token_task.add_done_callback(lambda _task: self._outbox.poke())
        if wait_for_check:
            await asyncio.wait([self._token_task])
        if not self._token_task.done():
            return
        task, self._token_task = self._token_task, None
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.warning("the Slack token check failed: %s", error)
            return
        if task.result():
            async with self._pause_lock:
                await asyncio.to_thread(set_slack_paused, self.db, None)
                self._paused = False
            log.info("Slack token works again; Slack delivery resumes")

    # ----- stopping, dying, outages -----

    async def _finish(self, intake: asyncio.Task[None]) -> None:
        """On stop: let rows in flight (and the intake item at hand) finish for a moment."""
        waiting = [intake, *self._in_flight.values()]
        _done, late = await asyncio.wait(waiting, timeout=self.config.drain_timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            log.info("gave up waiting for %d task(s) on stop; their rows are given back", len(late))

    async def _give_back(self) -> None:
        try:
            released = await asyncio.to_thread(
                outbox.release, self.db, self.worker_id, slack_settles_in=self.config.slack_settles_in
            )
            await asyncio.to_thread(inbound.release, self.db, self.worker_id)
        except StoreUnavailable:
            log.warning("could not give back claimed rows on stop; their leases will lapse")
            return
        if released:
            log.info("gave back %d delivery row(s) for another worker", released)

    async def _reclaim_orphans(self) -> None:
        """Give back rows held by workers of this machine whose process is gone."""
        prefix = local_prefix()
        if holder_pid(self.worker_id, prefix) is None:
            return
        try:
            # A dead worker may hold intake items and no delivery row (killed while turning a mail
            # or an event into a ticket): both kinds of claim name the holders to look at.
            holders = set(await asyncio.to_thread(outbox.holders, self.db, prefix))
            holders |= set(await asyncio.to_thread(inbound.holders, self.db, prefix))
            for holder in sorted(holders):
                pid = holder_pid(holder, prefix)
                # Our own id on a row before we claimed anything: a dead predecessor with our pid.
                if pid is None or (holder != self.worker_id and process_alive(pid)):
                    continue
                released = await asyncio.to_thread(
                    outbox.release, self.db, holder, slack_settles_in=self.config.slack_settles_in
                )
                await asyncio.to_thread(inbound.release, self.db, holder)
                log.warning(
                    "gave back %d delivery row(s) held by %s, which is no longer running", released, holder
                )
        except StoreUnavailable as exc:
            self._store_lost(exc)

    def _store_lost(self, exc: StoreUnavailable) -> None:
        self._outbox_claims_unknown = self._intake_claims_unknown = True
        if not self._store_down:  # an outage is logged once, not per pass
            log.error("worker cannot reach the database: %s", exc)
            self._store_down = True

    def _store_back(self) -> None:
        if self._store_down:
            log.info("database reachable again; worker resumes")
            self._store_down = False
