"""Alembic's entry point: run the migrations on the connection `migrations.upgrade` hands over
(or, from the `alembic` command line, on `HEMATOVISION_DB`)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from hematovision_core.schema import metadata

# Any fixed number: every replica takes the same PostgreSQL advisory lock before migrating, so
# one migrates and the others wait, then find the database at head.
MIGRATION_LOCK_ID = 1_402_2026


def run_migrations(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    if connection.dialect.name == "postgresql":  # held until the transaction ends
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_ID)))
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:  # the alembic command line: the database the app is configured with
    from hematovision_core import database
    from hematovision_core.config import Settings

    engine = database._create_engine(database.database_url(Settings.from_env().database))
    with engine.connect().execution_options(sqlite_immediate=True) as own, own.begin():
        run_migrations(own)
