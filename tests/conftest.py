"""Shared fixtures: a clean, migrated database per test (SQLite, or PostgreSQL when
SERVICEDESK_TEST_DATABASE_URL is set, as CI does)."""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import text

from store.db import Database
from store.migrate import upgrade
from store.models import Base

POSTGRES_URL = os.environ.get("SERVICEDESK_TEST_DATABASE_URL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, only the tests that open the test database run.

    The PostgreSQL run exists for what touches the store. A test that never opens the test
    database (parsing, rendering, the emulator, the demo on its own SQLite file) would only run
    again exactly as it ran on SQLite: CI runs both engines at once, and the PostgreSQL run is the
    longer one. Such tests are deselected here ("N deselected" in pytest's summary)."""
    if not POSTGRES_URL:
        return
    kept = [item for item in items if _opens_the_test_database(item)]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def _opens_the_test_database(item: pytest.Item) -> bool:
    if "database_url" in getattr(item, "fixturenames", ()):
        return True
    module = getattr(item, "module", None)
    return module is not None and _names_the_test_database(module)


@cache
def _names_the_test_database(module: ModuleType) -> bool:
    """A module that reads the PostgreSQL URL itself (its PostgreSQL-only tests, mostly)."""
    source = inspect.getsource(module)
    return "SERVICEDESK_TEST_DATABASE_URL" in source or "POSTGRES_URL" in source


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def _postgres_migrated() -> str | None:
    if not POSTGRES_URL:
        return None
    db = Database(POSTGRES_URL)
    upgrade(db)
    db.dispose()
    return POSTGRES_URL


def _reset_postgres(url: str) -> None:
    db = Database(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        connection.execute(text("INSERT INTO counters (name, value) VALUES ('ticket_number', 0)"))
    db.dispose()


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path, _postgres_migrated: str | None) -> str:
    """The URL of an empty, migrated database of its own for this test."""
    if _postgres_migrated:
        _reset_postgres(_postgres_migrated)
        return _postgres_migrated
    path = tmp_path / "servicedesk.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def lock_waits(db: Database, kind: str | None = None) -> int:
    """PostgreSQL: sessions of this test's database waiting for a lock (of this kind, such as
    `advisory`, when given)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        " AND (CAST(:kind AS text) IS NULL OR wait_event = :kind)"
    )
    with db.engine.connect() as connection:
        return int(connection.execute(text(query), {"kind": kind}).scalar() or 0)
