"""Group commit: mails whose DATA ends while a commit runs are stored together in the next one.

The batches are observed by wrapping the real store call (the first commit is held at a gate, so
the others are sure to queue behind it); the rows land in the real database.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from mail.intake_commit import MAX_BATCH, GroupCommit
from store import inbound
from store.context import Desk
from store.db import Database, StoreUnavailable
from store.inbound import Arrival
from tests.mail.intake_server import client, intake_desk, mail_bytes, running_intake, stored_items


class HeldStore:
    """inbound.accept_all in a thread, recording each batch; the first waits for `release`."""

    def __init__(self, db: Database, fail_first: bool = False) -> None:
        self.db = db
        self.fail_first = fail_first
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.first_started = asyncio.Event()

    async def __call__(self, arrivals: Sequence[Arrival]) -> list[bool]:
        self.batches.append([arrival.dedupe_key for arrival in arrivals])
        if len(self.batches) == 1:
            self.first_started.set()
            await self.release.wait()
            if self.fail_first:
                raise StoreUnavailable("database is down")
        return await asyncio.to_thread(inbound.accept_all, self.db, arrivals)


def mail(key: str) -> Arrival:
    return Arrival("email", key, payload={}, raw=key.encode())


async def first_commit_held(store: HeldStore) -> tuple[GroupCommit, asyncio.Task[bool]]:
    """A GroupCommit whose first mail (k0) is in a commit held at the store's gate."""
    commits = GroupCommit(store)
    first = asyncio.create_task(commits.accept(mail("k0")))
    await store.first_started.wait()
    return commits, first


def test_mails_that_end_during_a_commit_share_the_next_one(db: Database) -> None:
    async def run() -> list[bool]:
        store = HeldStore(db)
        commits, first = await first_commit_held(store)
        keys = ["k1", "k2", "k0", "k3", "k1"]  # k0 is in the held commit, k1 twice in this one
        rest = [asyncio.create_task(commits.accept(mail(key))) for key in keys]
        await asyncio.sleep(0)
        store.release.set()
        results = await asyncio.gather(first, *rest)
        assert store.batches == [["k0"], keys]
        await commits.idle()
        return results

    assert asyncio.run(run()) == [True, True, True, False, True, False]
    assert [item.dedupe_key for item in stored_items(db)] == ["k0", "k1", "k2", "k3"]


def test_a_failed_commit_refuses_its_own_batch_only(db: Database) -> None:
    async def run() -> tuple[BaseException | bool, ...]:
        store = HeldStore(db, fail_first=True)
        commits, first = await first_commit_held(store)
        second = asyncio.create_task(commits.accept(mail("k1")))
        await asyncio.sleep(0)
        store.release.set()
        return tuple(await asyncio.gather(first, second, return_exceptions=True))

    first, second = asyncio.run(run())
    assert isinstance(first, StoreUnavailable)
    assert second is True
    assert [item.dedupe_key for item in stored_items(db)] == ["k1"]


def test_a_sender_that_hangs_up_does_not_undo_the_others(db: Database) -> None:
    async def run() -> bool:
        store = HeldStore(db)
        commits, first = await first_commit_held(store)
        gone = asyncio.create_task(commits.accept(mail("k1")))
        stays = asyncio.create_task(commits.accept(mail("k2")))
        await asyncio.sleep(0)
        gone.cancel()
        store.release.set()
        await first
        result = await stays
        await commits.idle()
        return result

    assert asyncio.run(run()) is True
    # The mail whose sender hung up was stored anyway: its retry is answered as a duplicate.
    assert [item.dedupe_key for item in stored_items(db)] == ["k0", "k1", "k2"]


def test_a_long_queue_is_split_into_bounded_transactions(db: Database) -> None:
    async def run() -> list[int]:
        store = HeldStore(db)
        commits, first = await first_commit_held(store)
        rest = [asyncio.create_task(commits.accept(mail(f"m{n}"))) for n in range(MAX_BATCH + 3)]
        await asyncio.sleep(0)
        store.release.set()
        assert all(await asyncio.gather(first, *rest))
        return [len(batch) for batch in store.batches]

    assert asyncio.run(run()) == [1, MAX_BATCH, 3]
    assert len(stored_items(db)) == MAX_BATCH + 4


@pytest.fixture
def desk(db: Database, tmp_path: Path) -> Desk:
    return intake_desk(db, tmp_path)


def test_concurrent_senders_each_get_250_and_each_mail_is_stored_once(desk: Desk) -> None:
    senders, mails_each = 8, 5
    codes: list[int] = []
    lock = threading.Lock()

    def send(sender: int, port: int) -> None:
        for n in range(mails_each):
            with client(port) as smtp:
                smtp.mail(f"c{sender}@customer.test")
                smtp.rcpt("support@acme.test")
                try:
                    code, _ = smtp.data(mail_bytes(f"<{sender}.{n}@customer.test>"))
                except smtplib.SMTPDataError as error:
                    code = error.smtp_code
            with lock:
                codes.append(code)

    with running_intake(desk) as port:
        threads = [threading.Thread(target=send, args=(sender, port)) for sender in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert codes == [250] * (senders * mails_each)
    keys = sorted(item.dedupe_key for item in stored_items(desk.db))
    assert keys == sorted(f"email:{s}.{n}@customer.test" for s in range(senders) for n in range(mails_each))
