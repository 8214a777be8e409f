"""Alembic environment: one history for SQLite and PostgreSQL.

The connection is handed in by `store.migrate` (so the PostgreSQL advisory lock it holds covers
the whole upgrade): run migrations with `servicedesk db upgrade` and `servicedesk db downgrade
REVISION`. A config without a connection (Alembic's API used by hand) connects with its
`sqlalchemy.url`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from store.models import Base

config = context.config
target_metadata = Base.metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as fresh:
        run_with(fresh)


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `servicedesk db upgrade`")
run_migrations_online()
