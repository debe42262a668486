"""Alembic migrations: a database written by the pre-Alembic SQLite code keeps every answer."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from hematovision_core import database, migrations, storage
from hematovision_core.schema import answers as answers_table

# Written by the SQLite storage of commit 46330ba (before SQLAlchemy): 5 answers, 2 quiz codes.
LEGACY_FILE = Path(__file__).parent / "fixtures" / "quiz-v0.sqlite3"


def raw_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT * FROM answers ORDER BY id").fetchall()


def test_a_pre_alembic_sqlite_file_is_upgraded_with_every_answer_kept(tmp_path):
    path = tmp_path / "quiz.sqlite3"
    shutil.copy(LEGACY_FILE, path)
    before = raw_rows(path)
    assert len(before) == 5
    url = database.database_url(path)
    engine = database.engine_for(url)  # upgrades on first use
    assert migrations.current_revision(engine) == migrations.head_revision() == "0002"
    assert raw_rows(path) == before  # not a row or a value changed
    indexes = {index["name"] for index in sa.inspect(engine).get_indexes("answers")}
    assert {"answers_by_code", "answers_by_code_and_image"} <= indexes

    answers = storage.load_answers(url)
    assert [a.quiz_code for a in answers] == ["LEGACY-1"] * 4 + ["LEGACY-2"]
    second = answers[1]
    assert (second.correct, second.hint_used, second.model_confidence) == (False, True, 0.88)
    assert answers[2].model_answer is None and answers[2].model_confidence is None
    assert answers[4].nickname == "bén 😀"
    assert [s.quiz_code for s in storage.quiz_codes(url)] == ["LEGACY-2", "LEGACY-1"]

    storage.save_answer(url, answers[0])  # the old table takes new answers, after the old ones
    assert raw_rows(path)[-1][0] == 6 and raw_rows(path)[:5] == before
    database.dispose_engine(url)


def test_a_new_database_gets_the_table_schema_py_describes(database_url):
    engine = database.engine_for(database_url)
    columns = [column["name"] for column in sa.inspect(engine).get_columns("answers")]
    assert columns == [column.name for column in answers_table.columns]
    assert migrations.current_revision(engine) == migrations.head_revision()


def test_upgrading_twice_changes_nothing(database_url):
    engine = database.engine_for(database_url)
    migrations.upgrade(engine)  # as a second replica starting does
    assert migrations.current_revision(engine) == migrations.head_revision()
