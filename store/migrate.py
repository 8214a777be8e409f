"""Schema upgrades, serialized so several processes starting at once do not race."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

import migrations
from store.db import Database, StoreError, StoreUnavailable

# An arbitrary fixed key for pg_advisory_lock: "servicedesk migrate".
MIGRATION_LOCK_KEY = 0x5D_E5_C0_0D


class SchemaTooNew(StoreError):
    """The database was migrated by a newer release than this code."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # '%' must be doubled for configparser (it may appear in URL-encoded passwords).
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    if connection.dialect.name != "postgresql":
        # SQLite: the migration's own write transaction serializes writers.
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False
    except ResolutionError:
        return False


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply migrations up to `revision`; refuse a database newer than this code."""
    try:
        _upgrade(db, revision)
    except OperationalError as exc:
        raise StoreUnavailable(
            f"cannot migrate the database: {str(exc.orig).strip().splitlines()[0]}"
        ) from exc


def _upgrade(db: Database, revision: str) -> None:
    config = alembic_config(db.url)
    scripts = ScriptDirectory.from_config(config)
    with db.engine.connect() as connection, _migration_lock(connection):
        current = MigrationContext.configure(connection).get_current_revision()
        if current is not None and not _known(scripts, current):
            raise SchemaTooNew(
                f"the database is at schema revision {current}, newer than this release knows; "
                "upgrade servicedesk"
            )
        connection.commit()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def downgrade(db: Database, revision: str = "base") -> None:
    config = alembic_config(db.url)
    with db.engine.connect() as connection, _migration_lock(connection):
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()
