"""File SQLite keeps its connections in a pool, and each pooled connection stays tied to its file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from store.db import Database, StoreUnavailable
from store.models import InboundItem

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


def test_a_file_replaced_under_the_pool_is_the_one_written(moved_db: tuple[Database, Path]) -> None:
    """Restoring a backup over the file: later writes land in the restored file, not the old one."""
    db, folder = moved_db
    try:
        backup = folder.with_name("backup.db")
        shutil.copyfile(folder / "desk.db", backup)
        opened = count_connects(db)
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
        os.replace(backup, folder / "desk.db")
        with db.transaction() as session:
            session.execute(
                text(
                    "INSERT INTO inbound_items (kind, dedupe_key, payload, state, attempts, received_at) "
                    "VALUES ('email', 'k', '{}', 'pending', 0, CURRENT_TIMESTAMP)"
                )
            )
        assert len(opened) == 2  # the connection to the replaced file was not used again
        db.dispose()
        again = Database(f"sqlite:///{folder / 'desk.db'}")
        with again.transaction() as session:
            assert session.scalar(select(func.count()).select_from(InboundItem)) == 1
        again.dispose()
    finally:
        db.dispose()
