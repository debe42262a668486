"""The Instructor page under AppTest: off without a password, refuses a wrong one, shows a class."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hematovision_core import quiz, storage
from hematovision_core.quiz import QuizSpec
from synthetic import cell_image

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE = REPO_ROOT / "pages" / "4_Instructor.py"
TIMEOUT = 120
PASSWORD = "s3cret-lecture"


def scripted_class(data: Path) -> list[quiz.Answer]:
    """Three students answer the same four images of quiz code HALL-1; one more quiz elsewhere."""
    spec = QuizSpec("HALL-1", "tiny-3class", "exam", "mixed", 4)
    truths = ["eosinophil", "neutrophil", "lymphocyte", "eosinophil"]
    model = ["eosinophil", "neutrophil", "lymphocyte", "neutrophil"]
    questions = []
    for number, (truth, guess) in enumerate(zip(truths, model), start=1):
        image_id = f"pbc/{truth}/img{number}.png"
        (data / image_id).parent.mkdir(parents=True, exist_ok=True)
        cell_image((64, 64), (40 * number, 90, 160)).save(data / image_id)
        questions.append(quiz.Question(number, image_id, data / image_id, truth, guess, 0.9))
    given = {"ana": ["eosinophil", "neutrophil", "lymphocyte", "neutrophil"],
             "ben": ["neutrophil", "neutrophil", "lymphocyte", "neutrophil"],
             "cleo": ["eosinophil", "neutrophil", "eosinophil", "eosinophil"]}
    answers = [quiz.make_answer(spec, f"session-{name}", name, q, answer, 5.0)
               for name, row in given.items() for q, answer in zip(questions, row)]
    other = QuizSpec("OTHER-2", "tiny-3class", "practice", "mixed", 200)
    answers.append(quiz.make_answer(other, "session-dan", "dan", questions[0], "lymphocyte", 3.0))
    return answers


@pytest.fixture
def instructor_env(tmp_path, monkeypatch):
    db = tmp_path / "var" / "quiz.sqlite3"
    storage.save_answers(db, scripted_class(tmp_path / "data"))
    for name, value in {"HEMATOVISION_DATA": tmp_path / "data", "HEMATOVISION_VAR": tmp_path / "var",
                        "HEMATOVISION_DB": db, "HEMATOVISION_MODELS": tmp_path / "models"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return db


def test_instructor_view_is_off_without_a_password(instructor_env, monkeypatch):
    monkeypatch.delenv("HEMATOVISION_INSTRUCTOR_PASSWORD", raising=False)
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert "HEMATOVISION_INSTRUCTOR_PASSWORD" in at.info[0].value
    assert not at.text_input


def test_instructor_view_refuses_a_wrong_password_and_shows_the_class(instructor_env, monkeypatch):
    monkeypatch.setenv("HEMATOVISION_INSTRUCTOR_PASSWORD", PASSWORD)
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    at.text_input(key="instructor_password").input("guess").run()
    assert at.error and "Wrong password" in at.error[0].value
    assert not at.metric and not at.selectbox  # nothing about students leaks

    at.text_input(key="instructor_password").input(PASSWORD).run()
    assert not at.exception, at.exception
    assert not at.error
    at.selectbox(key="instructor_code").select("HALL-1").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Students"] == "3" and metrics["Answers"] == "12"
    assert metrics["Class accuracy"] == "67%"  # 8 of 12
    assert metrics["Model accuracy (same images)"] == "75%"
    pairs, students = (frame.value for frame in at.dataframe)
    assert pairs.iloc[0].tolist() == ["Eosinophil", "Neutrophil", 3]
    assert students["nickname"].tolist() == ["ana", "cleo", "ben"]  # best score first
    assert students["correct"].tolist() == [3, 3, 2] and "session_id" not in students
    assert any("Hardest images" in h.value for h in at.subheader)
    assert len(at.get("image")) == 3  # thumbnails of the three images someone got wrong
    charts = " ".join(chart.proto.spec for chart in at.get("plotly_chart"))
    assert "Score distribution" in charts and "Class vs Model" in charts
    assert "What the class mistakes for what" in charts
    assert at.get("download_button")

    at.selectbox(key="instructor_code").select("OTHER-2").run()
    assert {m.label: m.value for m in at.metric}["Students"] == "1"
