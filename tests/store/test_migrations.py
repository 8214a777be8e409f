"""The one Alembic history matches the models and runs forward and back, on SQLite and PostgreSQL."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from store.db import Database
from store.migrate import SchemaTooNew, current_revision, downgrade, upgrade
from store.models import Base


@pytest.fixture
def empty_db(tmp_path):
    url = os.environ.get("SERVICEDESK_TEST_DATABASE_URL")
    if url:
        # A database of its own, so the shared test database is left alone.
        admin = Database(url)
        name = "servicedesk_migration_test"
        with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        db = Database(url.rsplit("/", 1)[0] + f"/{name}")
        yield db
        db.dispose()
        admin = Database(url)
        with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
    else:
        db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
        yield db
        db.dispose()


def test_upgrade_matches_models_then_downgrades_to_base(empty_db):
    upgrade(empty_db)
    assert current_revision(empty_db) is not None
    with empty_db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
    with empty_db.engine.connect() as connection:
        assert (
            connection.execute(text("SELECT value FROM counters WHERE name = 'ticket_number'")).scalar() == 0
        )
    downgrade(empty_db)
    remaining = set(inspect(empty_db.engine).get_table_names()) - {"alembic_version"}
    assert remaining == set()
    upgrade(empty_db)  # and forward again
    assert current_revision(empty_db) is not None


def test_upgrade_twice_is_harmless(empty_db):
    upgrade(empty_db)
    upgrade(empty_db)
    assert current_revision(empty_db) is not None


def test_database_newer_than_code_is_refused(empty_db):
    upgrade(empty_db)
    with empty_db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(SchemaTooNew, match="newer than this release"):
        upgrade(empty_db)
