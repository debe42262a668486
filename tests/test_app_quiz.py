"""The Quiz page under AppTest: a practice round and an exam on a tiny model and a few images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from hematovision_core import storage
from synthetic import quiz_images

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE = REPO_ROOT / "pages" / "2_Quiz.py"
TIMEOUT = 120


@pytest.fixture
def quiz_env(tmp_path, tiny_model_folder, monkeypatch):
    """A models folder holding the tiny model with a split manifest, its images, a fresh database."""
    models = tmp_path / "models"
    model = models / tiny_model_folder.name
    shutil.copytree(tiny_model_folder, model)
    metadata = json.loads((model / "model.json").read_text())
    classes = metadata["classes"]
    manifest = quiz_images(tmp_path / "data", classes)
    (model / "split.csv").write_text(manifest)
    metadata["data"] = {"dataset": "pbc", "split_manifest": "split.csv"}
    (model / "model.json").write_text(json.dumps(metadata))
    db = tmp_path / "var" / "quiz.sqlite3"
    for name, value in {"HEMATOVISION_MODELS": models, "HEMATOVISION_DATA": tmp_path / "data",
                        "HEMATOVISION_VAR": tmp_path / "var", "HEMATOVISION_DB": db}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return {"db": db, "classes": classes}


def start(mode: str, code: str, length: int | None = None, nickname: str = "ana") -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    at.text_input(key="nickname").input(nickname)  # a form: nothing runs until Start
    at.text_input(key="quiz_code").input(code)
    at.radio(key="mode").set_value(mode)
    if length:
        at.number_input(key="length").set_value(length)
    at.button(key="start").click().run()
    assert not at.exception, at.exception
    return at


def current_question(at: AppTest):
    return at.session_state["quiz"].current_question


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def score_line(at: AppTest) -> str:
    """The one-line score under the feedback."""
    return next(c.value for c in at.caption if c.value.startswith("Score "))


def confusion_counts(at: AppTest) -> list[list[int]]:
    chart = next(c for c in at.get("plotly_chart") if "Which cells you mistake" in c.proto.spec)
    return json.loads(chart.proto.spec)["data"][0]["text"]  # counts (colour is the row share)


def test_practice_round_right_and_wrong_updates_score_and_confusion_matrix(quiz_env):
    classes = quiz_env["classes"]
    at = start("practice", "lab-1")
    assert any("LAB-1" in m.value for m in at.markdown)  # the code is shown, normalised

    truth = current_question(at).truth
    at.button(key=f"answer_{truth}").click().run()
    assert not at.exception, at.exception
    assert at.success and "Right" in at.success[0].value
    assert any("The model says" in m.value for m in at.markdown)
    assert score_line(at).startswith("Score **10 / 10** · right 1 / 1 · streak 1 (best 1) · ")
    assert not at.metric, "the score is one line under the feedback, not four metrics"
    assert not at.get("plotly_chart"), "progress charts are drawn only when asked for"
    at.toggle(key="show_progress").set_value(True).run()
    assert sum(map(sum, confusion_counts(at))) == 1

    at.button(key="next").click().run()
    truth = current_question(at).truth
    wrong = next(c for c in classes if c != truth)
    at.button(key=f"answer_{wrong}").click().run()
    assert not at.exception, at.exception
    assert at.error and "Not quite" in at.error[0].value
    assert score_line(at).startswith("Score **10 / 20** · right 1 / 2 · streak 0 (best 1) · ")
    assert score_line(at).endswith(" s a question")
    counts = confusion_counts(at)
    assert counts[classes.index(truth)][classes.index(wrong)] == 1

    at.button(key="finish").click().run()
    assert any("Review: 1 wrong answer" in h.value for h in at.subheader)
    stored = storage.load_answers(quiz_env["db"], quiz_code="LAB-1")
    assert [a.correct for a in stored] == [True, False]
    assert stored[1].answer == wrong and stored[0].nickname == "ana"
    assert all(a.model_answer in classes for a in stored)


def test_exam_ends_with_a_review(quiz_env):
    classes = quiz_env["classes"]
    at = start("exam", "EXAM-7", length=5)
    questions = at.session_state["quiz"].questions
    assert len(questions) == 5 and len({q.image_id for q in questions}) == 5
    for number in range(5):
        assert not at.success and not at.error  # no feedback until the end
        at.button(key=f"answer_{classes[0]}").click().run()
        assert not at.exception, at.exception
    wrong = sum(q.truth != classes[0] for q in questions)
    assert any(f"Review: {wrong} wrong answer" in h.value for h in at.subheader)
    assert metric(at, "Right") == f"{5 - wrong} / 5"
    assert len(storage.load_answers(quiz_env["db"], quiz_code="EXAM-7")) == 5

    at.button(key="new_quiz").click().run()  # back to the form, which kept its values
    assert at.text_input(key="nickname").value == "ana"
    assert at.radio(key="mode").value == "exam" and at.number_input(key="length").value == 5


def test_hard_quiz_reads_the_models_answers_once_and_caches_them(quiz_env, tmp_path):
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.run()
    at.text_input(key="nickname").input("ana")
    at.text_input(key="quiz_code").input("HARD1")
    at.selectbox(key="difficulty").set_value("hard")
    at.button(key="start").click().run()
    assert not at.exception, at.exception
    questions = at.session_state["quiz"].questions
    # Hard questions come from images the model got wrong or nearly confused, never training ones.
    assert questions and all("/train-" not in q.image_id for q in questions)
    assert all(q.model_answer is not None for q in questions)
    assert list((tmp_path / "var" / "cache" / "explorer").iterdir())  # shared with the explorer


def test_a_quiz_can_draw_from_a_folder_the_model_never_saw(quiz_env, tmp_path):
    classes = quiz_env["classes"]
    for i, label in enumerate(classes[:2]):  # another lab's folder, upper-case class names
        for j in range(3):
            target = tmp_path / "data" / "lab-b" / label.upper() / f"cell-{j}.tif"  # camera TIFFs
            target.parent.mkdir(parents=True, exist_ok=True)
            values = np.full((64, 64), 9000 * (i + j + 1), np.uint16)
            values[16:48, 16:48] += 6000  # a brighter cell on the field, not a blank frame
            Image.fromarray(values).save(target)
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.run()
    # The model's own folder is never offered as "never seen": only its held-out split.
    assert at.selectbox(key="quiz_source").options == [
        "Images of its own dataset it never trained on (validation and test split)",
        "lab-b: a folder it never saw (another lab, stain or microscope)"]
    at.selectbox(key="quiz_source").set_value("lab-b").run()
    assert any("6 images the model never trained on (`lab-b`" in c.value for c in at.caption)
    at.text_input(key="nickname").input("ana")
    at.text_input(key="quiz_code").input("LAB-B")
    at.radio(key="mode").set_value("exam")
    at.number_input(key="length").set_value(5)
    at.selectbox(key="difficulty").set_value("typical")  # needs the model's answers on the folder
    at.button(key="start").click().run()
    assert not at.exception, at.exception
    questions = at.session_state["quiz"].questions
    assert questions and all(q.image_id.startswith("lab-b/") for q in questions)
    assert any("images from `lab-b`" in m.value for m in at.markdown)
    shown = [image.url for element in at.get("image") for image in element.proto.imgs]
    assert len(shown) == 1 and shown[0].endswith(".jpg")  # a JPEG copy of the 16-bit TIFF
    assert all(q.model_answer in classes for q in questions)
    at.button(key=f"answer_{classes[0]}").click().run()
    assert not at.exception, at.exception
    stored = storage.load_answers(quiz_env["db"], quiz_code="LAB-B")
    assert [a.image_id for a in stored] == [questions[0].image_id]


def test_a_nickname_with_markdown_and_html_is_shown_as_typed(quiz_env):
    import html
    import string

    # bold, HTML, a link, a colour directive and LaTeX in the form's 30 characters
    nickname = "**b**<i>x</i>[l](x):red[a]$x$"
    at = start("practice", "NICK-1", nickname=nickname)
    header = next(m.value for m in at.markdown if "NICK-1" in m.value)
    shown = header.split(" · ")[0]
    assert html.unescape(shown) == f"**{nickname}**"  # bold around it, the name itself literal
    assert not set(shown[2:-2]) & (set(string.punctuation) - set("&#;"))  # no Markdown left
    assert "<i>" not in header and ":red[" not in header and "$" not in header


# ---- Review mode: a student who keeps a nickname (and a PIN) -----------------------------------


def keep_and_start(at: AppTest, nickname: str, pin: str, button: str = "start") -> AppTest:
    """Fill the form for a kept nickname and press Start (or the Review button)."""
    at.text_input(key="nickname").input(nickname)
    at.checkbox(key="keep_nickname").check()
    at.text_input(key="review_pin").input(pin)
    at.button(key=button).click().run()
    assert not at.exception, at.exception
    return at


def test_review_mode_brings_a_missed_cell_back_the_next_day(quiz_env, monkeypatch):
    from datetime import timedelta

    from hematovision_core import review, review_store

    classes = quiz_env["classes"]
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.run()
    at.text_input(key="quiz_code").input("KEEP-1")
    keep_and_start(at, "Zoé", "4711")
    question = current_question(at)
    wrong = next(c for c in classes if c != question.truth)
    at.button(key=f"answer_{wrong}").click().run()
    assert not at.exception, at.exception
    stored = storage.load_answers(quiz_env["db"], quiz_code="KEEP-1")
    student_id = stored[0].student_id
    assert student_id is not None
    today = review.local_day(review.utc_now())
    cards = review_store.history(quiz_env["db"], student_id, today).cards
    assert [(c.image_id, c.box) for c in cards] == [(question.image_id, 1)]

    at.button(key="new_quiz").click().run()
    at.button(key="start_review").click().run()  # the same day: nothing is due yet
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Due today"] == "0"
    assert not at.info  # not "nothing to review": look-alikes of the cells just confused
    assert at.subheader[0].value == "Cell 1 of 2"
    assert at.session_state["review"]["plan"].confusions == [(question.truth, wrong)]
    at.button(key="review_done").click().run()

    tomorrow = review.utc_now() + timedelta(days=1)
    monkeypatch.setattr(review, "utc_now", lambda: tomorrow)  # the page's clock, a day on
    at.button(key="start_review").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Due today"] == "1" and metrics["Streak"] == "0 days"
    state = at.session_state["review"]
    items = state["plan"].items
    assert items[0].image_id == question.image_id and items[0].kind == review.DUE
    assert {i.kind for i in items[1:]} == {review.LOOK_ALIKE}
    assert any("A cell you missed (box 1 of 3)" == c.value for c in at.caption)
    at.button(key=f"review_answer_{question.truth}").click().run()
    assert not at.exception, at.exception
    assert at.success and "comes back in 3 days (box 2 of 3)" in at.success[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Streak"] == "1 day" and metrics["Due today"] == "0"
    assert any(c.value.startswith("Look-alikes today, from the cells you mix up: ")
               for c in at.caption)
    for item in items[1:]:
        at.button(key="review_next").click().run()
        at.button(key=f"review_answer_{item.truth}").click().run()
        assert not at.exception, at.exception
    at.button(key="review_next").click().run()
    assert any("Done for today" in h.value for h in at.subheader)
    day = review.local_day(tomorrow)
    cards = review_store.history(quiz_env["db"], student_id, day).cards
    assert [(c.box, c.due_on) for c in cards] == [(2, day + timedelta(days=3))]


def test_a_kept_nickname_refuses_a_wrong_pin_with_a_message(quiz_env):
    first = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    first.run()
    keep_and_start(first, "max", "4711", button="start_review")
    assert "Nothing to review today" in first.info[0].value  # kept, nothing missed yet

    other = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    other.run()
    keep_and_start(other, "MAX", "0000")
    assert other.error and "Wrong PIN" in other.error[0].value
    assert not other.session_state["quiz"] if "quiz" in other.session_state else True
    keep_and_start(other, "max", "12")  # too short to be a PIN
    assert "4 to 32 characters" in other.error[0].value
    other.checkbox(key="keep_nickname").uncheck()
    other.button(key="start_review").click().run()
    assert "needs a kept nickname" in other.error[0].value
    assert not storage.load_answers(quiz_env["db"])  # nothing answered, nothing stored


def test_the_run_start_makes_shows_the_question_without_drawing_the_settings(quiz_env,
                                                                              monkeypatch):
    """Every element is a message the server sends each student of a hall pressing Start at
    once: the run Start makes reads the sent form from the state instead of drawing it again."""
    import app_review

    drawn = []
    keep_nickname_ui = app_review.keep_nickname_ui
    monkeypatch.setattr(app_review, "keep_nickname_ui",
                        lambda container: drawn.append(1) or keep_nickname_ui(container))
    at = start("exam", "HALL-9", length=5, nickname="bea")
    assert len(drawn) == 1  # the first run's form only
    session = at.session_state["quiz"]
    assert (session.nickname, session.spec.code, session.spec.mode) == ("bea", "HALL-9", "exam")
    assert session.planned_length == 5 and at.button(key=f"answer_{quiz_env['classes'][0]}")

    refused = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    refused.run()
    refused.text_input(key="nickname").input("cy")
    refused.text_input(key="quiz_code").input("no such code!")
    refused.button(key="start").click().run()
    assert not refused.exception, refused.exception
    assert refused.error and "code" in refused.error[0].value.lower()
    assert refused.text_input(key="nickname").value == "cy"  # the form again, as it was sent
    assert refused.text_input(key="quiz_code").value == "no such code!"
    assert "quiz" not in refused.session_state or refused.session_state["quiz"] is None
