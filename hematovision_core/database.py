"""Where the quiz answers live: a SQLAlchemy engine per process and database URL, upgraded once.

`HEMATOVISION_DB` is a SQLAlchemy URL: `sqlite:///var/quiz.sqlite3` (the default, one machine)
or `postgresql+psycopg://user@host:5432/hematovision` (several replicas, several machines). A
bare file path still means a SQLite file, as before URLs.

Why an engine per process and URL: an engine owns a pool of connections, which must not cross a
fork, and each Streamlit session runs in its own thread, so connections are checked out for one
short transaction and handed back (`transaction`). The first engine of a URL in a process runs
the Alembic migrations (`migrations.upgrade`), so a replica never serves an old schema.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

Result = TypeVar("Result")

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0  # a lecture hall queues for SQLite's one write lock
RETRIES = 6  # extra tries after a lock, a serialization failure or a lost connection
RETRY_FIRST_PAUSE_SECONDS = 0.1  # doubled after every try: 0.1 ... 3.2 s, 6.3 s in all (a
# PostgreSQL restart or fail-over); SQLite also waits up to its busy timeout on every try
POOL_SIZE = 5  # connections kept per process (PostgreSQL); a page run holds one for milliseconds
POOL_OVERFLOW = 10  # extra connections at a peak: a replica opens at most 15
POOL_TIMEOUT_SECONDS = 30.0
# PostgreSQL SQLSTATEs worth a retry: serialization failure, deadlock, and the server going away
# (admin shutdown, crash recovery, cannot connect now).
RETRY_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08001", "08003", "08006"}


class StorageError(RuntimeError):
    """The answers database cannot be read or written; the message is meant for the user."""


SUPPORTED = "a SQLite file path, sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"


def database_url(database: str | Path) -> str:
    """The SQLAlchemy URL for a `HEMATOVISION_DB` value; a bare path means a SQLite file there.
    StorageError now, for a value that is not a database URL, rather than at the first answer."""
    text = str(database)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    try:
        make_url(text)
    except (sa.exc.ArgumentError, ValueError):  # its message would repeat the URL and password
        raise StorageError(f"HEMATOVISION_DB is not a database URL; use {SUPPORTED}.") from None
    return text


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL (None for an in-memory database)."""
    name = make_url(url).database
    return Path(name) if name and name != ":memory:" else None


def _create_engine(url: str) -> Engine:
    if not is_sqlite(url):
        # pre_ping: a connection the server dropped (restart, idle timeout) is replaced at
        # checkout instead of failing the student's answer.
        try:
            return sa.create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                                    pool_timeout=POOL_TIMEOUT_SECONDS, pool_pre_ping=True)
        except (ImportError, sa.exc.NoSuchModuleError, sa.exc.ArgumentError):
            # another database (mysql://...), or a driver that is not installed
            raise StorageError(f"HEMATOVISION_DB names a database this app does not support "
                               f"({make_url(url).drivername}); use {SUPPORTED}.") from None
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection, _record):
        # SQLAlchemy's pysqlite recipe: the driver's own implicit BEGIN is switched off and
        # SQLAlchemy's "begin" below starts every transaction, so DDL (the migrations) is
        # transactional too. WAL: readers never block the writer.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe in WAL: a crash loses no commit
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection):
        # IMMEDIATE takes the write lock at once (waiting up to the busy timeout): a migration
        # racing another process's migration waits for it instead of failing halfway.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def engine_for(database: str | Path) -> Engine:
    """This process's engine for a database, created and migrated on first use (StorageError)."""
    url = database_url(database)
    key = (os.getpid(), url)  # a forked child builds its own pool
    with _engines_lock:  # held while migrating: other threads wait for the upgraded schema
        engine = _engines.get(key)
        if engine is None:
            from hematovision_core import migrations  # alembic loads only where a database is used

            engine = _create_engine(url)
            try:
                retry(lambda: migrations.upgrade(engine))
            except BaseException:
                engine.dispose()
                raise
            _engines[key] = engine
    return engine


def dispose_engine(database: str | Path) -> None:
    """Close this process's pool for a database (tests, before dropping it)."""
    with _engines_lock:
        engine = _engines.pop((os.getpid(), database_url(database)), None)
    if engine is not None:
        engine.dispose()


def is_transient(error: BaseException) -> bool:
    """Whether trying again may succeed: a lock, a serialization failure, a lost connection."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    original = getattr(error, "orig", None)
    if getattr(original, "sqlstate", None) in RETRY_SQLSTATES:
        return True
    text = str(original or error).lower()
    return isinstance(error, sa.exc.OperationalError) and ("locked" in text or "busy" in text)


def retry(operation: Callable[[], Result]) -> Result:
    """Run `operation`, again after transient failures (bounded); StorageError when it cannot.

    A retried write is a whole transaction run again: a transaction that failed was rolled back,
    so nothing is stored twice (except in the rare case of a connection lost after the server
    committed but before it said so).
    """
    for attempt in range(RETRIES + 1):
        try:
            return operation()
        except sa.exc.SQLAlchemyError as error:
            if not is_transient(error) or attempt == RETRIES:
                raise StorageError(f"The quiz database could not be used: "
                                   f"{getattr(error, 'orig', None) or error}") from error
        except OSError as error:
            raise StorageError(f"The quiz database could not be used: {error}") from error
        time.sleep(RETRY_FIRST_PAUSE_SECONDS * 2 ** attempt)
    raise AssertionError("unreachable")


@contextmanager
def _begin(engine: Engine, write: bool, isolation: str | None) -> Iterator[Connection]:
    options = {}
    if engine.dialect.name == "sqlite":
        options["sqlite_immediate"] = write  # SQLite's read transactions are snapshots already
    elif isolation:
        options["isolation_level"] = isolation
    with engine.connect().execution_options(**options) as connection:
        with connection.begin():
            yield connection


def transaction(database: str | Path, work: Callable[[Connection], Result],
                write: bool = False, isolation: str | None = None) -> Result:
    """`work(connection)` in one short transaction, committed on return, retried when transient.

    `write`: on SQLite, take the write lock at BEGIN. `isolation`: a PostgreSQL isolation level
    (e.g. "REPEATABLE READ" for several reads from one snapshot); the default is READ COMMITTED.
    """
    def attempt() -> Result:
        with _begin(engine_for(database), write, isolation) as connection:
            return work(connection)

    return retry(attempt)
