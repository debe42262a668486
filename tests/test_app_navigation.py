"""Moving between pages under AppTest: the model chosen in the sidebar and a quiz in progress
stay for the whole session (Streamlit drops a widget's state on a page that does not draw it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from synthetic import quiz_images

REPO_ROOT = Path(__file__).resolve().parent.parent
HOME = str(REPO_ROOT / "Home.py")
QUIZ = "pages/2_Quiz.py"
CLASSIFY = "pages/1_Classify.py"
TIMEOUT = 120
MODELS = ("tiny-a", "tiny-b")  # sorted: tiny-a is the default when pbc-8class is absent


@pytest.fixture
def two_models(tmp_path, tiny_model_folder, monkeypatch):
    """Two copies of the tiny model, each owning the same few images through a split manifest."""
    classes = json.loads((tiny_model_folder / "model.json").read_text())["classes"]
    manifest = quiz_images(tmp_path / "data", classes)
    for name in MODELS:
        model = tmp_path / "models" / name
        shutil.copytree(tiny_model_folder, model)
        (model / "split.csv").write_text(manifest)
        metadata = json.loads((model / "model.json").read_text())
        metadata.update(name=name, data={"dataset": "pbc", "split_manifest": "split.csv"})
        (model / "model.json").write_text(json.dumps(metadata))
    for variable, value in {"HEMATOVISION_MODELS": tmp_path / "models",
                            "HEMATOVISION_DATA": tmp_path / "data",
                            "HEMATOVISION_VAR": tmp_path / "var",
                            "HEMATOVISION_DB": tmp_path / "var" / "quiz.sqlite3"}.items():
        monkeypatch.setenv(variable, str(value))
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return classes


def visit(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_model_chosen_on_home_holds_on_every_page_and_back(two_models):
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    assert at.selectbox(key="model_name").value == "tiny-a"
    at.selectbox(key="model_name").set_value("tiny-b").run()
    assert any(h.value == "Model card: tiny-b" for h in at.header)
    for page in (QUIZ, CLASSIFY, "Home.py", QUIZ):
        visit(at, page)
        assert at.selectbox(key="model_name").value == "tiny-b", page
    visit(at, "Home.py")
    assert any(h.value == "Model card: tiny-b" for h in at.header)


def test_a_quiz_in_progress_and_its_form_survive_a_visit_to_another_page(two_models):
    classes = two_models
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    at.selectbox(key="model_name").set_value("tiny-b").run()
    visit(at, QUIZ)
    at.text_input(key="nickname").input("ana")
    at.text_input(key="quiz_code").input("WALK-1")
    at.radio(key="mode").set_value("exam")
    at.number_input(key="length").set_value(5)
    at.button(key="start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key=f"answer_{classes[0]}").click().run()
    questions = at.session_state["quiz"].questions

    visit(at, "Home.py")
    visit(at, QUIZ)
    state = at.session_state["quiz"]
    assert state is not None and len(state.answers) == 1
    assert state.questions == questions and state.spec.model_name == "tiny-b"
    assert not any("started over" in i.value for i in at.info)
    assert any("Question 2 of 5" in s.value for s in at.subheader)

    # Another model in the sidebar mid-quiz: the quiz goes on with its own, and says so.
    at.selectbox(key="model_name").set_value("tiny-a").run()
    assert at.session_state["quiz"].spec.model_name == "tiny-b"
    assert any("goes on with the model it started with" in i.value for i in at.info)
    at.button(key=f"answer_{classes[0]}").click().run()
    assert len(at.session_state["quiz"].answers) == 2

    # The next quiz starts from the form as it was left, with the sidebar's model.
    at.button(key="new_quiz").click().run()
    visit(at, "Home.py")
    visit(at, QUIZ)
    assert at.text_input(key="nickname").value == "ana"
    assert at.text_input(key="quiz_code").value == "WALK-1"
    assert at.radio(key="mode").value == "exam" and at.number_input(key="length").value == 5
    assert at.selectbox(key="model_name").value == "tiny-a"
