"""Alembic migrations: a database written by the pre-Alembic SQLite code keeps every answer, and
one at the previous head (0002) gains Review mode's tables with every answer kept."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from alembic import command

from hematovision_core import database, migrations, review, review_store, storage, students
from hematovision_core.schema import answers as answers_table

# Written by the SQLite storage of commit 46330ba (before SQLAlchemy): 5 answers, 2 quiz codes.
LEGACY_FILE = Path(__file__).parent / "fixtures" / "quiz-v0.sqlite3"


# The columns the pre-Alembic code wrote; revision 0003 adds student_id after them.
LEGACY_COLUMNS = ("id, quiz_code, session_id, nickname, model_name, mode, difficulty, "
                  "question_number, image_id, truth, answer, model_answer, model_confidence, "
                  "correct, hint_used, seconds, answered_at")


def raw_rows(path: Path, columns: str = "*") -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"SELECT {columns} FROM answers ORDER BY id").fetchall()


def test_a_pre_alembic_sqlite_file_is_upgraded_with_every_answer_kept(tmp_path):
    path = tmp_path / "quiz.sqlite3"
    shutil.copy(LEGACY_FILE, path)
    before = raw_rows(path)
    assert len(before) == 5
    url = database.database_url(path)
    engine = database.engine_for(url)  # upgrades on first use
    assert migrations.current_revision(engine) == migrations.head_revision() == "0004"
    assert raw_rows(path, LEGACY_COLUMNS) == before  # not a row or a value changed
    assert {row[0] for row in raw_rows(path, "student_id")} == {None}  # no kept nickname then
    indexes = {index["name"] for index in sa.inspect(engine).get_indexes("answers")}
    assert {"answers_by_code", "answers_by_code_and_image", "answers_by_student"} <= indexes

    answers = storage.load_answers(url)
    assert [a.quiz_code for a in answers] == ["LEGACY-1"] * 4 + ["LEGACY-2"]
    second = answers[1]
    assert (second.correct, second.hint_used, second.model_confidence) == (False, True, 0.88)
    assert answers[2].model_answer is None and answers[2].model_confidence is None
    assert answers[4].nickname == "bén 😀"
    assert [s.quiz_code for s in storage.quiz_codes(url)] == ["LEGACY-2", "LEGACY-1"]

    storage.save_answer(url, answers[0])  # the old table takes new answers, after the old ones
    assert raw_rows(path)[-1][0] == 6 and raw_rows(path, LEGACY_COLUMNS)[:5] == before
    database.dispose_engine(url)


def test_a_new_database_gets_the_tables_schema_py_describes(database_url):
    from hematovision_core.schema import metadata

    engine = database.engine_for(database_url)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        columns = [column["name"] for column in inspector.get_columns(table.name)]
        assert columns == [column.name for column in table.columns], table.name
    assert [c.name for c in answers_table.columns][-1] == "student_id"
    assert migrations.current_revision(engine) == migrations.head_revision()


def upgrade_to(engine: sa.Engine, revision: str) -> None:
    """Bring a database to one revision (not the head), as an older release of the app did."""
    config = migrations.alembic_config()
    with engine.connect().execution_options(sqlite_immediate=True) as connection:
        with connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, revision)


def test_a_database_at_0002_gains_review_mode_with_every_answer_kept(database_url):
    from dataclasses import replace
    from datetime import datetime, timezone

    from test_storage import make_answer

    engine = database._create_engine(database.database_url(database_url))
    upgrade_to(engine, "0002")
    assert migrations.current_revision(engine) == "0002"
    old = [make_answer(number=n, given=g) for n, g in enumerate(["neutrophil", "lymphocyte"], 1)]
    columns = [name for name in answers_table.c.keys() if name not in ("id", "student_id")]
    with engine.begin() as connection:  # the 0002 table: no student_id column yet
        assert "student_id" not in {c["name"] for c in sa.inspect(connection).get_columns("answers")}
        connection.execute(sa.text(f"INSERT INTO answers ({', '.join(columns)}) VALUES "
                                   f"({', '.join(':' + name for name in columns)})"),
                           [{name: getattr(answer, name) for name in columns} for answer in old])
    engine.dispose()

    assert storage.load_answers(database_url) == old  # the app's engine upgrades to the head first
    upgraded = database.engine_for(database_url)
    assert migrations.current_revision(upgraded) == migrations.head_revision()
    assert {"students", "review_cards", "reviews"} <= set(sa.inspect(upgraded).get_table_names())
    now = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    ana = students.sign_in(database_url, "ana", "4711", now)
    linked = replace(make_answer(number=3, given="eosinophil"), student_id=ana.id)
    review_store.save_quiz_answer(database_url, linked, now, review.local_day(now))
    assert [a.student_id for a in storage.load_answers(database_url)] == [None, None, ana.id]
    assert len(review_store.history(database_url, ana.id, review.local_day(now)).cards) == 1


def test_upgrading_twice_changes_nothing(database_url):
    engine = database.engine_for(database_url)
    migrations.upgrade(engine)  # as a second replica starting does
    assert migrations.current_revision(engine) == migrations.head_revision()
