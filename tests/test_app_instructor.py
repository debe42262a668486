"""The Instructor page under AppTest: off without a password, refuses a wrong one, shows a class."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hematovision_core import instructor_sign_in, login_guard, quiz, storage
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
def instructor_env(database_url, tmp_path, monkeypatch):
    """The scripted class in a database of the test's own, SQLite and then PostgreSQL."""
    db = database_url
    storage.save_answers(db, scripted_class(tmp_path / "data"))
    for name, value in {"HEMATOVISION_DATA": tmp_path / "data", "HEMATOVISION_VAR": tmp_path / "var",
                        "HEMATOVISION_DB": db, "HEMATOVISION_MODELS": tmp_path / "models"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    # Fresh guards per test: one test's wrong passwords never slow another (each test's database
    # holds its own server-wide count).
    monkeypatch.setattr(instructor_sign_in, "_GUARDS", {})
    return db



def sign_in(at, password: str) -> None:
    """Type the password and press the form's button (the field sits in a form)."""
    at.text_input(key="instructor_password").input(password)
    at.button(key="instructor_login_button").click().run()

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
    sign_in(at, "guess")
    assert at.error and "Wrong password" in at.error[0].value
    assert not at.metric and not at.selectbox  # nothing about students leaks

    sign_in(at, PASSWORD)
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
    assert at.button(key="export_csv_prepare")

    at.selectbox(key="instructor_code").select("OTHER-2").run()
    assert {m.label: m.value for m in at.metric}["Students"] == "1"


def test_following_the_class_live_keeps_the_chosen_code_without_counts(instructor_env,
                                                                       monkeypatch):
    monkeypatch.setenv("HEMATOVISION_INSTRUCTOR_PASSWORD", PASSWORD)
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    sign_in(at, PASSWORD)
    at.selectbox(key="instructor_code").select("OTHER-2").run()
    at.toggle(key="instructor_live").set_value(True).run()
    assert not at.exception, at.exception
    live = at.selectbox(key="instructor_code_live")
    assert live.value == "OTHER-2" and set(live.options) == {"HALL-1", "OTHER-2"}
    assert {m.label: m.value for m in at.metric}["Students"] == "1"
    assert any(c.value.startswith("Updated ") for c in at.caption)
    at.toggle(key="instructor_live").set_value(False).run()
    again = at.selectbox(key="instructor_code")
    assert again.value == "OTHER-2" and all("student(s)" in o for o in again.options)


def test_a_database_that_cannot_count_wrong_passwords_lets_nobody_in(instructor_env, tmp_path,
                                                                     monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database's folder should be")
    monkeypatch.setenv("HEMATOVISION_DB", str(blocker / "quiz.sqlite3"))
    monkeypatch.setenv("HEMATOVISION_INSTRUCTOR_PASSWORD", PASSWORD)
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    sign_in(at, PASSWORD)
    assert not at.exception, at.exception
    assert "could not be used" in at.error[0].value
    assert not at.metric and not at.selectbox


def test_repeated_wrong_passwords_slow_down_then_lock_the_page(instructor_env, monkeypatch):
    monkeypatch.setenv("HEMATOVISION_INSTRUCTOR_PASSWORD", PASSWORD)
    now = [0.0]
    guard = login_guard.LoginGuard(clock=lambda: now[0],
                                   server=instructor_sign_in.DatabaseCount(instructor_env))
    monkeypatch.setattr(instructor_sign_in, "instructor_guard", lambda database: guard)
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    for number in range(4):
        sign_in(at, f"guess-{number}")
    assert not at.exception, at.exception
    assert "Wrong password. Wait 1 s before the next try" in at.error[0].value  # the 4th wrong one: a delay
    sign_in(at, PASSWORD)  # too soon, even if right
    assert "Too many wrong passwords: wait 1 s" in at.error[0].value and not at.metric
    for number in range(4, 10):
        now[0] += 100  # past every delay
        sign_in(at, f"guess-{number}")
    assert at.error[0].value == "Too many wrong passwords: sign-in is locked for 5 min."
    now[0] += 60
    sign_in(at, PASSWORD)
    assert "locked for 4 min" in at.error[0].value
    assert not at.metric and not at.selectbox  # nothing about students leaks
    now[0] += 240
    at.button(key="retry_password").click().run()
    assert not at.error and at.selectbox(key="instructor_code")


def test_the_answers_csv_is_made_when_asked_and_outlasts_other_sessions_runs(instructor_env,
                                                                             monkeypatch,
                                                                             media_managers):
    import csv
    import io
    from dataclasses import replace

    monkeypatch.setenv("HEMATOVISION_INSTRUCTOR_PASSWORD", PASSWORD)
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    sign_in(at, PASSWORD)
    at.selectbox(key="instructor_code").select("HALL-1").run()
    assert not at.exception, at.exception
    # AppTest gives every run a media file manager of its own: look in the last run's.
    csv_files = lambda: [f for f in media_managers[-1]._storage._files_by_id.values()  # noqa: E731
                         if f.mimetype.startswith("text/csv")]
    # No CSV is made, so there is no URL to leak, until the instructor asks for one.
    assert not [b for b in at.get("download_button") if "CSV" in b.proto.label]
    assert not csv_files()
    at.button(key="export_csv_prepare").click().run()
    assert not at.exception and not at.error, at.exception
    assert not [b for b in at.button if b.key == "export_csv_prepare"]  # spent: gone
    manager = media_managers[-1]
    url = at.download_button(key="export_csv").proto.url
    file_id = url.rsplit("/", 1)[1].split(".")[0]
    rows = list(csv.DictReader(io.StringIO(
        manager._storage.get_file(file_id).content.decode("utf-8-sig"))))
    assert len(rows) == 12 and {row["quiz_code"] for row in rows} == {"HALL-1"}
    # Every script run of any session ends by sweeping the files no session refers to. Streamlit's
    # deferred download lost its CSV after two sweeps, before a browser in a busy lecture hall
    # had fetched it; this session refers to its CSV while the button is shown.
    for _ in range(3):
        manager.remove_orphaned_files()
    assert manager._storage.get_file(file_id).content
    at.run()  # the instructor clicks elsewhere: the same CSV, at the same URL
    assert at.download_button(key="export_csv").proto.url == url

    # A new answer for the code: the CSV no longer matches the figures, so it goes.
    first = storage.load_answers(instructor_env, quiz_code="HALL-1")[0]
    storage.save_answers(instructor_env, [replace(first, session_id="session-eve",
                                                  nickname="eve")])
    at.run()
    assert {m.label: m.value for m in at.metric}["Answers"] == "13"
    assert at.button(key="export_csv_prepare")
    assert not [b for b in at.get("download_button") if "CSV" in b.proto.label]
    assert not csv_files()


def test_the_instructor_sees_which_cells_the_class_keeps_missing_over_time(instructor_env,
                                                                        tmp_path, monkeypatch):
    import json
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    # A second lecture of HALL-1 a week later: eosinophils still missed, neutrophils learned.
    later = datetime.now(timezone.utc) + timedelta(days=7)
    again = [replace(a, session_id=a.session_id + "-w2", answered_at=later.isoformat(
        timespec="seconds"), answer=a.answer if a.truth == "eosinophil" else a.truth)
        for a in scripted_class(tmp_path / "week-2") if a.quiz_code == "HALL-1"]
    storage.save_answers(instructor_env, again)
    monkeypatch.setenv("HEMATOVISION_INSTRUCTOR_PASSWORD", PASSWORD)
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    sign_in(at, PASSWORD)
    at.selectbox(key="instructor_code").select("HALL-1").run()
    assert not at.exception, at.exception
    assert any("keeps missing, over time" in h.value for h in at.subheader)

    def heatmap() -> dict:
        chart = next(c for c in at.get("plotly_chart") if "keeps missing" in c.proto.spec)
        return json.loads(chart.proto.spec)["data"][0]

    days = heatmap()
    assert len(days["x"]) == 2 and days["y"] == ["Eosinophil", "Lymphocyte", "Neutrophil"]
    eosinophil = days["text"][0]
    assert eosinophil == ["3/6", "3/6"]  # missed as often in the second lecture
    assert days["text"][2][1] == "0/3"  # neutrophils: right every time a week later
    at.radio(key="errors_period").set_value("week").run()
    assert not at.exception, at.exception
    assert all(len(row) == 2 for row in heatmap()["text"])  # one column per week
