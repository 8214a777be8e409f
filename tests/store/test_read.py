"""Database.read(): a transaction that only reads, beside the writer, and refuses to write."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from store.db import Database, StoreUnavailable, WriteInReadOnly
from store.models import Label

ON_POSTGRES = bool(os.environ.get("SERVICEDESK_TEST_DATABASE_URL"))
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's own file and connection handling")


def labels(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(Label.name).order_by(Label.name)))


def test_a_read_sees_what_was_committed(db: Database) -> None:
    with db.transaction() as session:
        session.add(Label(name="billing"))
    assert labels(db) == ["billing"]


def test_a_reader_is_not_blocked_by_a_write_transaction_held_open(db: Database) -> None:
    with db.transaction() as session:
        session.add(Label(name="before"))
    written, finish = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            with db.transaction() as session:
                session.add(Label(name="during"))
                session.flush()  # the row is written and the write lock held
                written.set()
                assert finish.wait(10), "the reader never finished"
        except BaseException as exc:  # reported on the test's thread
            failures.append(exc)
            written.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert written.wait(10)
        # The writer still holds its transaction: the read completes anyway, without its row.
        assert labels(db) == ["before"]
    finally:
        finish.set()
        thread.join(10)
    assert not failures
    assert labels(db) == ["before", "during"]


def test_a_write_inside_read_fails_loudly(db: Database) -> None:
    with pytest.raises(WriteInReadOnly), db.read() as session:
        session.add(Label(name="sneaky"))
        session.flush()
    with pytest.raises(WriteInReadOnly), db.read() as session:
        session.execute(text("UPDATE counters SET value = value + 1"))
    assert labels(db) == []


def test_the_connection_is_writable_again_after_a_read(db: Database) -> None:
    opened: list[object] = []
    event.listen(db.engine, "connect", lambda connection, _record: opened.append(connection))
    with pytest.raises(WriteInReadOnly), db.read() as session:
        session.add(Label(name="sneaky"))
    assert labels(db) == []
    with db.transaction() as session:
        session.add(Label(name="fine"))
    assert labels(db) == ["fine"]
    assert len(opened) == 1  # one pooled connection served the reads and the write


@sqlite_only
def test_a_read_is_unavailable_while_the_folder_is_moved_away(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copyfile(database_url.removeprefix("sqlite:///"), folder / "desk.db")
    db = Database(f"sqlite:///{folder / 'desk.db'}")
    try:
        assert labels(db) == []
        folder.rename(tmp_path / "away")
        with pytest.raises(StoreUnavailable):
            labels(db)
        (tmp_path / "away").rename(folder)
        assert labels(db) == []
    finally:
        db.dispose()


@sqlite_only
def test_a_read_whose_connection_dies_is_unavailable_and_the_next_one_works(db: Database) -> None:
    with pytest.raises(StoreUnavailable), db.read() as session:
        session.connection().connection.dbapi_connection.close()  # type: ignore[union-attr]
        session.scalar(select(func.count()).select_from(Label))
    assert labels(db) == []
