"""File SQLite keeps its connections in a pool, and each pooled connection stays tied to its file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from store.db import Database, StoreUnavailable
from store.models import InboundItem, utcnow

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("SERVICEDESK_TEST_DATABASE_URL")), reason="SQLite's own connection handling"
)


@pytest.fixture
def moved_db(database_url: str, tmp_path: Path) -> tuple[Database, Path]:
    """A database in a folder of its own, so the test can move the folder away."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copyfile(database_url.removeprefix("sqlite:///"), folder / "desk.db")
    return Database(f"sqlite:///{folder / 'desk.db'}"), folder


def count_connects(db: Database) -> list[object]:
    opened: list[object] = []
    event.listen(db.engine, "connect", lambda connection, _record: opened.append(connection))
    return opened


def test_many_transactions_open_one_connection(db: Database) -> None:
    opened = count_connects(db)
    for _ in range(50):
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
    assert len(opened) == 1


def test_pooled_connections_keep_their_pragmas(db: Database) -> None:
    for _ in range(3):
        with db.transaction() as session:
            assert session.scalar(text("PRAGMA foreign_keys")) == 1
            assert session.scalar(text("PRAGMA journal_mode")) == "wal"
            assert session.scalar(text("PRAGMA synchronous")) == 2  # FULL


def test_ping_says_false_while_the_folder_is_moved_away(moved_db: tuple[Database, Path]) -> None:
    db, folder = moved_db
    try:
        assert db.ping()  # a connection is now in the pool, holding the file open
        folder.rename(folder.with_name("away"))
        assert not db.ping()
        folder.with_name("away").rename(folder)
        assert db.ping()
    finally:
        db.dispose()


def test_a_transaction_is_unavailable_while_the_folder_is_moved_away(
    moved_db: tuple[Database, Path],
) -> None:
    db, folder = moved_db
    try:
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
        folder.rename(folder.with_name("away"))
        # The pooled connection could still write to the moved file; it must not be used.
        with pytest.raises(StoreUnavailable), db.transaction() as session:
            session.execute(text("SELECT count(*) FROM inbound_items"))
        folder.with_name("away").rename(folder)
        with db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(InboundItem)) == 0
    finally:
        db.dispose()


def test_a_file_replaced_under_the_running_service_is_refused_until_a_restart(
    moved_db: tuple[Database, Path],
) -> None:
    """Restoring a backup over the file while the service runs: nothing is read from or written to
    either file (the old connections' WAL would pair with the restored file); a restart uses it."""
    db, folder = moved_db
    try:
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
        backup = folder.with_name("backup.db")
        # A backup that differs from the live database, so a read shows which file answered.
        shutil.copyfile(folder / "desk.db", backup)
        restored = Database(f"sqlite:///{backup}")
        with restored.transaction() as session:
            session.add(
                InboundItem(
                    kind="email",
                    dedupe_key="from-backup",
                    payload={},
                    state="pending",
                    attempts=0,
                    received_at=utcnow(),
                )
            )
        restored.dispose()
        os.replace(backup, folder / "desk.db")

        replaced = pytest.raises(StoreUnavailable, match="replaced while the service ran")
        with replaced, db.transaction() as session:
            session.execute(text("SELECT count(*) FROM inbound_items"))
        assert not db.ping()
        db.dispose()
        again = Database(f"sqlite:///{folder / 'desk.db'}")  # the restart
        with again.read() as session:
            assert session.scalars(select(InboundItem.dedupe_key)).all() == ["from-backup"]
        again.dispose()
    finally:
        db.dispose()


def test_a_missing_file_is_never_recreated_empty(moved_db: tuple[Database, Path]) -> None:
    db, folder = moved_db
    try:
        assert db.ping()
        (folder / "desk.db").rename(folder / "elsewhere.db")  # the file alone, its folder stays
        assert not db.ping()
        with pytest.raises(StoreUnavailable), db.transaction() as session:
            session.execute(text("SELECT 1"))
        assert not (folder / "desk.db").exists()
    finally:
        db.dispose()
