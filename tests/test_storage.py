"""The answers store on SQLite and PostgreSQL: a round trip, summaries, many students at once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from hematovision_core import database, quiz, storage
from hematovision_core.quiz import QuizSpec


def make_answer(code="LECTURE-1", session="s1", nickname="ana", number=1, given="neutrophil",
                truth="neutrophil") -> quiz.Answer:
    spec = QuizSpec(code, "tiny-3class", "exam", "mixed", 20)
    question = quiz.Question(number, f"pbc/{truth}/{number}.jpg", Path("/x.jpg"), truth,
                             "eosinophil", 0.812)
    return quiz.make_answer(spec, session, nickname, question, given, 4.25, hint_used=number % 2 == 0)


def test_round_trip_keeps_every_field(database_url):
    assert storage.load_answers(database_url) == []
    answers = [make_answer(number=n, given=g) for n, g in enumerate(["neutrophil", "lymphocyte"], 1)]
    for answer in answers:
        storage.save_answer(database_url, answer)
    storage.save_answer(database_url, make_answer(code="OTHER", session="s2", nickname="bén 😀"))
    assert storage.load_answers(database_url, quiz_code="LECTURE-1") == answers
    assert storage.load_answers(database_url, session_id="s2")[0].nickname == "bén 😀"
    assert len(storage.load_answers(database_url)) == 3
    loaded = storage.load_answers(database_url, quiz_code="LECTURE-1")[0]
    assert loaded.correct is True and loaded.hint_used is False and loaded.model_confidence == 0.812
    summaries = storage.quiz_codes(database_url)
    assert [s.quiz_code for s in summaries] == ["OTHER", "LECTURE-1"]  # most recent first
    assert (summaries[1].students, summaries[1].answers) == (1, 2)
    assert summaries[1].first_answer == answers[0].answered_at


def test_sqlite_keeps_wal_and_a_bare_path_means_the_same_file(tmp_path):
    path = tmp_path / "nested" / "quiz.sqlite3"
    storage.save_answer(path, make_answer())  # a bare path, as HEMATOVISION_DB was before URLs
    assert len(storage.load_answers(f"sqlite:///{path}")) == 1
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    database.dispose_engine(path)


def test_concurrent_writers_lose_nothing(database_url):
    students, questions = 12, 15
    errors = []

    def student(index: int):
        try:
            for number in range(1, questions + 1):
                storage.save_answer(database_url, make_answer(session=f"s{index}",
                                                              nickname=f"n{index}", number=number))
        except Exception as error:  # noqa: BLE001 - collected and reported below
            errors.append(error)

    threads = [threading.Thread(target=student, args=(i,)) for i in range(students)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    answers = storage.load_answers(database_url, quiz_code="LECTURE-1")
    assert len(answers) == students * questions
    for index in range(students):
        mine = [a.question_number for a in answers if a.session_id == f"s{index}"]
        assert mine == list(range(1, questions + 1))  # each student's answers in order
    assert storage.quiz_codes(database_url)[0].students == students


def test_unusable_sqlite_file_raises_a_storage_error(tmp_path):
    not_a_db = tmp_path / "quiz.sqlite3"
    not_a_db.write_text("this is not a database " * 100)
    with pytest.raises(storage.StorageError):
        storage.save_answer(not_a_db, make_answer())


def test_unreachable_postgres_raises_a_storage_error():
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(storage.StorageError, match="could not be used"):
        storage.load_answers("postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=3")


@pytest.mark.postgres
def test_a_connection_the_server_dropped_is_replaced(postgres_url):
    import sqlalchemy as sa

    storage.save_answer(postgres_url, make_answer(number=1))
    engine = database.engine_for(postgres_url)
    with engine.connect() as connection:  # the pooled connection the next answer will reuse
        backend = connection.execute(sa.select(sa.func.pg_backend_pid())).scalar_one()
    other = database._create_engine(postgres_url)
    with other.connect() as connection:  # as a server restart or an idle timeout would
        assert connection.execute(sa.select(sa.func.pg_terminate_backend(backend))).scalar_one()
    other.dispose()
    storage.save_answer(postgres_url, make_answer(number=2))
    assert [a.question_number for a in storage.load_answers(postgres_url)] == [1, 2]
