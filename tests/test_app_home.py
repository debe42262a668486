"""The Home page through AppTest: it renders, shows the disclaimer and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
HOME = str(REPO_ROOT / "Home.py")
SHIPPED_MODELS = ("pbc-8class", "blood-cells-4class")
TIMEOUT = 120  # seconds: the first run imports TensorFlow and loads the model


def run_home(model_name: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(HOME, default_timeout=TIMEOUT)
    if model_name:
        at.session_state["model_name"] = model_name
    return at.run()


def test_home_renders_the_guide_and_card_for_the_tiny_model(monkeypatch, tmp_path,
                                                            tiny_model_folder):
    monkeypatch.setenv("HEMATOVISION_MODELS", str(tiny_model_folder.parent))
    monkeypatch.setenv("HEMATOVISION_VAR", str(tmp_path / "var"))
    at = run_home()
    assert not at.exception, [e.value for e in at.exception]
    assert any("not a diagnostic device" in c.value for c in at.caption)
    assert at.title[0].value.endswith("HematoVision")
    assert any(h.value == "Model card: tiny-3class" for h in at.header)
    # the tiny model records no metrics or history: the card says so instead of failing
    assert any("no evaluation figures" in i.value for i in at.info)


def test_home_stops_with_a_message_when_no_model_exists(monkeypatch, tmp_path):
    monkeypatch.setenv("HEMATOVISION_MODELS", str(tmp_path / "empty"))
    at = run_home()
    assert not at.exception
    assert "No trained model found" in at.error[0].value


@pytest.mark.parametrize("model_name", SHIPPED_MODELS)
def test_shipped_model_home_shows_figures_confusion_matrix_and_curves(model_name, monkeypatch):
    folder = REPO_ROOT / "models" / model_name
    if not (folder / "model.json").is_file():
        pytest.skip(f"shipped model {model_name} is not in models/ yet")
    monkeypatch.setenv("HEMATOVISION_MODELS", str(folder.parent))
    at = run_home(model_name)
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="model_name").value == model_name
    assert len(at.dataframe) >= 2  # headline figures and the per-class table
    charts = [chart.key for chart in at.get("plotly_chart")]
    assert charts == ["confusion_matrix", "reliability", "training_curves"]
    text = " ".join(m.value for m in at.markdown)
    assert "What the probabilities mean" in text and "Out-of-domain guard" in text


def test_sidebar_prefers_cross_validation_to_a_small_validation_split(monkeypatch):
    monkeypatch.setenv("HEMATOVISION_MODELS", str(REPO_ROOT / "models"))
    smears = run_home("blood-cells-4class")  # 28 validation smears, 5-fold CV over 222
    figures = json.loads((REPO_ROOT / "models" / "blood-cells-4class" / "model.json").read_text())[
        "metrics"]["cross_validation"]
    [card] = smears.sidebar.caption  # the model card is one element
    assert (f"**CV accuracy {figures['accuracy']:.1%}** · CV macro-F1 "
            f"{figures['macro_f1']:.1%}") in card.value
    assert "5-fold cross-validation over 222" in card.value and "28 images" in card.value
    cells = run_home("pbc-8class")  # no cross-validation: its 1,539 validation images
    [card] = cells.sidebar.caption
    assert "**Val accuracy " in card.value and "CV" not in card.value


def test_a_clients_clear_cache_message_does_not_reload_the_model(monkeypatch, tiny_model_folder):
    """Any browser can send Streamlit's clear-cache message; models must survive it (issue 11:
    each reload cost every user the model and leaked 32-45 MB)."""
    from streamlit.runtime import app_session
    from streamlit.testing.v1 import AppTest

    from hematovision_core.predict import Classifier

    monkeypatch.setenv("HEMATOVISION_MODELS", str(tiny_model_folder.parent))
    loads = []
    original = Classifier.load.__func__
    monkeypatch.setattr(Classifier, "load",
                        classmethod(lambda cls, folder: loads.append(folder)
                                    or original(cls, folder)))
    at = AppTest.from_file(str(REPO_ROOT / "Home.py"), default_timeout=60).run()
    before = len(loads)
    # What AppSession does with a client's `clear_cache` BackMsg, minus the session state.
    app_session.AppSession._handle_clear_cache_request(
        type("Session", (), {"_session_state": {}})())
    at.run()
    assert not at.exception
    assert len(loads) == before, "a client's cache clear reloaded the model"
