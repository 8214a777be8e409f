"""Schema upgrades, serialized so several processes starting at once do not race."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError

import migrations
from store.db import Database, StoreError, StoreUnavailable
from store.models import Ticket
from store.sqlite import is_memory_url

# An arbitrary fixed key for pg_advisory_lock: "servicedesk migrate".
MIGRATION_LOCK_KEY = 0x5D_E5_C0_0D


UPGRADE_HINT = "run `servicedesk db upgrade`"


class SchemaTooNew(StoreError):
    """The database was migrated by a newer release than this code."""


class SchemaNotReady(StoreError):
    """The database is not at this release's schema (missing, empty, older, newer); the message says
    what to do."""


class ForeignSchema(StoreError):
    """The database carries another program's Alembic revision and none of the desk's tables."""


def _too_new(revision: str) -> str:
    return (
        f"the database is at schema revision {revision}, newer than this release knows; upgrade servicedesk"
    )


def _unknown_revision(connection: Connection, revision: str) -> StoreError:
    """A revision this release does not know: a newer release's, when the desk's tables are there;
    else another Alembic-managed program's database (a shared PostgreSQL database, the wrong file),
    which no upgrade of servicedesk mends."""
    if inspect(connection).has_table(Ticket.__tablename__):
        return SchemaTooNew(_too_new(revision))
    return ForeignSchema(
        f"the database holds another program's schema (revision {revision}, none of servicedesk's "
        "tables): give SERVICEDESK_DATABASE_URL a database of the desk's own"
    )


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
        # A failed migration leaves its transaction aborted: unlocking inside it would fail too, and
        # that error would hide the migration's own.
        try:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
        except DBAPIError:
            connection.invalidate()  # the connection is gone, and with it its session's lock


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


def missing_sqlite_file(url: str) -> str | None:
    """The path of the SQLite file `url` names when no such file exists (connecting would create
    an empty one there); None for any other URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or is_memory_url(url) or parsed.query.get("uri"):
        return None
    path = parsed.database
    if not path or path == ":memory:" or os.path.exists(path):
        return None
    return os.path.abspath(path)


def schema_problem(db: Database) -> str | None:
    """None when the database is at this release's schema, else one line saying what to do
    (`servicedesk db upgrade`, which `serve` also does on start).

    Only reads. A database that cannot be reached raises StoreUnavailable; one migrated by a newer
    release raises SchemaTooNew (no upgrade helps).
    """
    scripts = ScriptDirectory.from_config(alembic_config(db.url))
    try:
        with db.read() as session:
            connection = session.connection()
            current = MigrationContext.configure(connection).get_current_revision()
            if current is not None and not _known(scripts, current):
                raise _unknown_revision(connection, current)
    except DBAPIError as exc:  # not a database at all ("file is not a database"), and the like
        raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from exc
    if current == scripts.get_current_head():
        return None
    if current is None:
        return f"the database has no schema yet: {UPGRADE_HINT}"
    return f"the database schema is older than this release: {UPGRADE_HINT}"


def open_migrated(url: str) -> Database:
    """The store for a command that uses it but does not migrate it (`servicedesk outbox`).

    Never creates a SQLite file, and a database without this release's schema is one line that says
    what to do (SchemaNotReady, SchemaTooNew) instead of a missing table.
    """
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise SchemaNotReady(f"the database file {missing} does not exist: {UPGRADE_HINT}")
    db = Database(url)
    with ExitStack() as on_failure:
        on_failure.callback(db.dispose)  # whatever goes wrong, the pool is closed
        problem = schema_problem(db)
        if problem is not None:
            raise SchemaNotReady(problem)
        on_failure.pop_all()
    return db


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply migrations up to `revision`; refuse a database newer than this code."""
    _migrate(db, revision, command.upgrade)


def downgrade(db: Database, revision: str = "base") -> None:
    """Undo migrations down to `revision` (`base`: no tables); one this release does not know is
    refused, as is a database newer than this code."""
    scripts = ScriptDirectory.from_config(alembic_config(db.url))
    if revision != "base" and not _known(scripts, revision):
        raise StoreError(
            f"no schema revision {revision!r}: this release knows base to {scripts.get_current_head()}"
        )
    missing = missing_sqlite_file(db.url)
    if missing is not None:  # connecting would make an empty one, to undo nothing in it
        raise SchemaNotReady(f"the database file {missing} does not exist: nothing to undo")
    _migrate(db, revision, _downgrade_to(scripts))


def _downgrade_to(scripts: ScriptDirectory) -> Callable[[Config, str], None]:
    """Alembic's downgrade, saying in the desk's words a target above where the database is (Alembic:
    "Destination 0005 is not a valid downgrade target from current head(s)")."""

    def step(config: Config, revision: str) -> None:
        connection = config.attributes["connection"]
        current = MigrationContext.configure(connection).get_current_revision()
        below = (
            {script.revision for script in scripts.iterate_revisions(current, "base")} if current else set()
        )
        if revision != "base" and revision not in below:
            raise StoreError(
                f"the database is at schema revision {current or 'base'}, below {revision}: "
                "`servicedesk db upgrade` goes forward"
            )
        command.downgrade(config, revision)

    return step


def _migrate(db: Database, revision: str, step: Callable[[Config, str], None]) -> None:
    try:
        _migrate_locked(db, revision, step)
    except OperationalError as exc:
        raise StoreUnavailable(f"cannot migrate the database: {_first_line(exc)}") from exc
    except DBAPIError as exc:
        # The database refused the migration (no right to create tables, a file that is not a
        # database): one line naming the cause, for whoever runs it.
        raise StoreError(f"cannot migrate the database: {_first_line(exc)}") from exc
    except CommandError as exc:  # Alembic's: e.g. a downgrade "target" above the current revision
        raise StoreError(f"cannot migrate the database: {exc}") from exc


def _migrate_locked(db: Database, revision: str, step: Callable[[Config, str], None]) -> None:
    config = alembic_config(db.url)
    scripts = ScriptDirectory.from_config(config)
    with db.engine.connect() as connection, _migration_lock(connection), _sqlite_tables_rebuilt(connection):
        current = MigrationContext.configure(connection).get_current_revision()
        if current is not None and not _known(scripts, current):
            raise _unknown_revision(connection, current)
        connection.commit()
        config.attributes["connection"] = connection
        step(config, revision)
        connection.commit()


@contextmanager
def _sqlite_tables_rebuilt(connection: Connection) -> Iterator[None]:
    """SQLite's batch mode rebuilds a table (copy, DROP, rename) to drop a column: with foreign keys
    enforced, dropping a table other rows refer to fails ("FOREIGN KEY constraint failed") as soon as
    there is data, so no migration could go back on a desk in use. They are off while migrating (as
    SQLite's own ALTER TABLE procedure says), checked afterwards, and on again for the pool."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")  # outside any transaction, where it takes effect
    try:
        yield
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
    except BaseException:
        connection.invalidate()  # maybe inside a transaction, where the PRAGMA could not be undone
        raise
    raw.execute("PRAGMA foreign_keys=ON")
    if broken:
        raise StoreError(f"the migration left {len(broken)} row(s) referring to nothing (in {broken[0][0]})")


def _first_line(exc: DBAPIError) -> str:
    lines = str(exc.orig or exc).strip().splitlines()
    return lines[0] if lines else type(exc.orig or exc).__name__
