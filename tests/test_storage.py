"""The answers store: a round trip, summaries, and many students writing at once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from hematovision_core import quiz, storage
from hematovision_core.quiz import QuizSpec


def make_answer(code="LECTURE-1", session="s1", nickname="ana", number=1, given="neutrophil",
                truth="neutrophil") -> quiz.Answer:
    spec = QuizSpec(code, "tiny-3class", "exam", "mixed", 20)
    question = quiz.Question(number, f"pbc/{truth}/{number}.jpg", Path("/x.jpg"), truth,
                             "eosinophil", 0.812)
    return quiz.make_answer(spec, session, nickname, question, given, 4.25, hint_used=number % 2 == 0)


def test_round_trip_keeps_every_field(tmp_path):
    db = tmp_path / "nested" / "quiz.sqlite3"
    assert storage.load_answers(db) == []
    answers = [make_answer(number=n, given=g) for n, g in enumerate(["neutrophil", "lymphocyte"], 1)]
    for answer in answers:
        storage.save_answer(db, answer)
    storage.save_answer(db, make_answer(code="OTHER", session="s2", nickname="ben"))
    assert storage.load_answers(db, quiz_code="LECTURE-1") == answers
    assert storage.load_answers(db, session_id="s2")[0].nickname == "ben"
    assert len(storage.load_answers(db)) == 3
    loaded = storage.load_answers(db, quiz_code="LECTURE-1")[0]
    assert loaded.correct is True and loaded.hint_used is False and loaded.model_confidence == 0.812
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    summaries = storage.quiz_codes(db)
    assert [s.quiz_code for s in summaries] == ["OTHER", "LECTURE-1"]  # most recent first
    assert (summaries[1].students, summaries[1].answers) == (1, 2)


def test_concurrent_writers_lose_nothing(tmp_path):
    db = tmp_path / "quiz.sqlite3"
    students, questions = 12, 15
    errors = []

    def student(index: int):
        try:
            for number in range(1, questions + 1):
                storage.save_answer(db, make_answer(session=f"s{index}", nickname=f"n{index}",
                                                    number=number))
        except Exception as error:  # noqa: BLE001 - collected and reported below
            errors.append(error)

    threads = [threading.Thread(target=student, args=(i,)) for i in range(students)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    answers = storage.load_answers(db, quiz_code="LECTURE-1")
    assert len(answers) == students * questions
    for index in range(students):
        mine = [a.question_number for a in answers if a.session_id == f"s{index}"]
        assert mine == list(range(1, questions + 1))  # each student's answers in order
    assert storage.quiz_codes(db)[0].students == students


def test_unusable_database_raises_a_storage_error(tmp_path):
    not_a_db = tmp_path / "quiz.sqlite3"
    not_a_db.write_text("this is not a database " * 100)
    with pytest.raises(storage.StorageError):
        storage.save_answer(not_a_db, make_answer())
