"""Alembic migrations of the answers database; `upgrade` brings one to the newest revision.

Revisions live in `versions/` (`alembic -c alembic.ini revision -m "..."` adds one). The app
upgrades at start (`database.engine_for`, `serve.py`), so replicas sharing a PostgreSQL database
all run it: `env.py` serializes them with an advisory lock (PostgreSQL) or SQLite's write lock.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

FOLDER = Path(__file__).resolve().parent


def alembic_config() -> Config:
    """Alembic's settings without an ini file: only where the scripts are."""
    config = Config()
    config.set_main_option("script_location", str(FOLDER))
    return config


def upgrade(engine: Engine) -> None:
    """Upgrade the database behind `engine` to the newest revision, in one transaction."""
    config = alembic_config()
    # sqlite_immediate: the write lock from the start (see database._create_engine).
    with engine.connect().execution_options(sqlite_immediate=True) as connection:
        with connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The revision a database is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
