"""Group commit for the SMTP intake: mails that arrive while one commit runs share the next one.

Every 250 waits for its mail's commit, and a commit costs the same for one row as for a dozen (a
transaction, a write turn on SQLite, a round trip and a WAL flush on PostgreSQL, one fsync). So one
commit runs at a time, and the mails whose DATA ended meanwhile are stored together in the next:
under load the intake's commits are counted per batch, not per mail, and a mail alone is stored
at once, as before (no timer holds it back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from store.inbound import Arrival

# Stores a batch in one transaction, off the event loop: `inbound.accept_all` in a thread.
StoreBatch = Callable[[Sequence[Arrival]], Awaitable[list[bool]]]

# Mails per transaction at most: bounds the time one commit holds SQLite's write lock.
MAX_BATCH = 64


class GroupCommit:
    def __init__(self, store_batch: StoreBatch) -> None:
        self._store_batch = store_batch
        self._waiting: list[tuple[Arrival, asyncio.Future[bool]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def accept(self, arrival: Arrival) -> bool:
        """Store `arrival` durably (False: its key was stored before); raises as inbound.accept does."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((arrival, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_while_waiting())
        # A sender hanging up cancels only its own wait: the batch is stored for the others.
        return await future

    async def idle(self) -> None:
        """Return once every mail handed over so far has been stored or refused (for a clean stop)."""
        while self._committer is not None:
            await asyncio.shield(self._committer)

    async def _commit_while_waiting(self) -> None:
        batch: list[tuple[Arrival, asyncio.Future[bool]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    stored = await self._store_batch([arrival for arrival, _ in batch])
                except Exception as exc:
                    # Not handled here but handed on: each sender's handle_DATA gets the store's
                    # error as a direct call would have raised it (451), and none is left waiting.
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, stored, strict=True):
                    if not future.done():
                        future.set_result(result)
        except asyncio.CancelledError:
            # The loop is going away: nobody is left to answer, and the senders will retry.
            for _, future in batch + self._waiting:
                future.cancel()
            self._waiting = []
            raise
        finally:
            self._committer = None
