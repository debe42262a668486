"""Database URLs, one engine per process and URL, and which failures are retried."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hematovision_core import database, migrations


def test_a_bare_path_is_a_sqlite_url_and_urls_pass_through(tmp_path):
    assert database.database_url(tmp_path / "q.sqlite3") == f"sqlite:///{tmp_path / 'q.sqlite3'}"
    url = "postgresql+psycopg://hv@db.example:5432/hematovision"
    assert database.database_url(url) == url


def test_the_engine_is_made_and_the_schema_upgraded_once_per_process_and_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'quiz.sqlite3'}"
    upgrades = []
    original = migrations.upgrade
    monkeypatch.setattr(migrations, "upgrade", lambda engine: (upgrades.append(1), original(engine)))
    first = database.engine_for(url)
    assert database.engine_for(tmp_path / "quiz.sqlite3") is first  # the same database
    assert upgrades == [1]
    assert migrations.current_revision(first) == migrations.head_revision()
    database.dispose_engine(url)


def locked() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))


class FakeSqlstateError(Exception):
    def __init__(self, sqlstate):
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def test_transient_failures_are_retried_a_bounded_number_of_times(monkeypatch):
    monkeypatch.setattr(database.time, "sleep", lambda seconds: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise locked()
        return "stored"

    assert database.retry(flaky) == "stored" and len(calls) == 3
    serialization = sa.exc.OperationalError("UPDATE", {}, FakeSqlstateError("40001"))
    assert database.is_transient(serialization)
    calls.clear()

    def always_locked():
        calls.append(1)
        raise locked()

    with pytest.raises(database.StorageError, match="locked"):
        database.retry(always_locked)
    assert len(calls) == database.RETRIES + 1


def test_other_failures_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise sa.exc.IntegrityError("INSERT", {}, FakeSqlstateError("23502"))

    with pytest.raises(database.StorageError):
        database.retry(broken)
    assert calls == [1]


@pytest.mark.parametrize("value, says", [
    ("mysql://teacher:s3cret@127.0.0.1/quiz", "does not support (mysql)"),  # no such driver here
    ("postgresql+nodriver://teacher:s3cret@db/quiz", "does not support (postgresql+nodriver)"),
    ("postgresql://teacher:s3cret@db:port/quiz", "is not a database URL"),  # a port not a number
])
def test_a_database_the_app_cannot_use_is_named_without_its_password(value, says):
    with pytest.raises(database.StorageError, match=r"HEMATOVISION_DB .*postgresql\+psycopg") as e:
        database.engine_for(value)
    assert says in str(e.value) and "s3cret" not in str(e.value)
