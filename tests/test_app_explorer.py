"""The Dataset Explorer page through AppTest, with the tiny model on a 12-image folder.

The folder (symlinks to real PBC images) is the tiny model's "own" data, with a split manifest:
1 train, 1 val and 2 test images per class. Widgets are driven by key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hematovision_core import explorer, split_predictions

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE = str(REPO_ROOT / "pages" / "3_Dataset_Explorer.py")
TIMEOUT = 120  # seconds: the first run imports TensorFlow and loads the model
ERRORS_TAB = "Where the model errs"


@pytest.fixture
def explorer_env(monkeypatch, tmp_path, owning_model_folder, small_data):
    monkeypatch.setenv("HEMATOVISION_MODELS", str(owning_model_folder.parent))
    monkeypatch.setenv("HEMATOVISION_DATA", str(small_data))
    monkeypatch.setenv("HEMATOVISION_VAR", str(tmp_path / "var"))
    return tmp_path / "var"


def new_app(tab: str | None = None):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    if tab is not None:
        app.session_state["explorer_tab"] = tab
    app.session_state["explorer_heatmaps"] = False  # Grad-CAM has its own tests
    return app


def view_buttons(app, prefix: str) -> list[str]:
    """Image paths of the View buttons in one gallery (keys end with the image's path)."""
    start = f"explorer_view_{prefix}_"
    return [button.key[len(start):] for button in app.button if button.key.startswith(start)]


def test_page_renders_the_browse_gallery_and_the_image_view(explorer_env, small_data):
    app = new_app().run()
    assert not app.exception
    assert app.selectbox(key="explorer_dataset").value == "pbc"
    assert app.selectbox(key="explorer_split").value == "test"
    # The test split was small enough to run at once, and is now cached on disk.
    assert list((explorer_env / "cache" / "explorer").iterdir())
    shown = view_buttons(app, "browse_eosinophil")
    assert shown == ["eosinophil/" + p.name for p in sorted((small_data / "pbc" / "eosinophil")
                                                             .iterdir())][2:]  # the 2 test ones
    assert any(e.label.startswith("Morphology: Eosinophil") for e in app.expander)
    # Side by side: two classes, and the thumbnails were cached once.
    app.multiselect(key="explorer_classes").set_value(["eosinophil", "neutrophil"]).run()
    assert len(view_buttons(app, "browse_neutrophil")) == 2
    assert len(list((explorer_env / "cache" / "thumbnails").rglob("*.jpg"))) >= 4
    app.button(key=f"explorer_view_browse_eosinophil_{shown[0]}").click().run()
    assert not app.exception
    assert shown[0] in [caption.value for caption in app.caption]
    assert any("model says" in m.value for m in app.markdown)


def test_filters_narrow_the_gallery(explorer_env):
    app = new_app(ERRORS_TAB).run()
    assert not app.exception
    everything = view_buttons(app, "errs")
    assert len(everything) == 6
    app.selectbox(key="explorer_true").set_value("neutrophil").run()
    neutrophils = view_buttons(app, "errs")
    assert len(neutrophils) == 2 and all(p.startswith("neutrophil/") for p in neutrophils)
    # Correct plus wrong neutrophils are all the neutrophils.
    app.radio(key="explorer_outcome").set_value("correct").run()
    correct = view_buttons(app, "errs")
    app.radio(key="explorer_outcome").set_value("wrong").run()
    wrong = view_buttons(app, "errs")
    assert sorted(correct + wrong) == sorted(neutrophils)
    app.slider(key="explorer_confidence").set_value((0.99, 1.0)).run()
    assert not app.exception
    assert len(view_buttons(app, "errs")) <= len(wrong)


def test_a_confusion_matrix_cell_selects_the_right_images(explorer_env, owning_classifier,
                                                          small_data):
    app = new_app(ERRORS_TAB).run()
    source = explorer.split_source(small_data, owning_classifier, "pbc", "test")
    cache_dir = explorer_env / "cache"
    table = explorer.prediction_table(split_predictions.load_cached(cache_dir, owning_classifier,
                                                                    source))
    true_label, predicted_label = table.iloc[0]["label"], table.iloc[0]["predicted"]
    # The fallback for a click on the chart: the pair of selectboxes a click also sets.
    app.selectbox(key="explorer_true").set_value(true_label)
    app.selectbox(key="explorer_predicted").set_value(predicted_label).run()
    assert not app.exception
    expected = list(explorer.cell_rows(table, true_label, predicted_label)["path"])
    assert view_buttons(app, "errs") == expected
    assert any(m.value.startswith(f"Showing {len(expected)} of {len(expected)}")
               for m in app.markdown)


def test_the_map_tab_draws_every_image(explorer_env):
    app = new_app("Map").run()
    assert not app.exception
    assert any("principal components" in c.value for c in app.caption)


def test_without_data_the_page_explains_how_to_get_it(explorer_env, monkeypatch, tmp_path):
    monkeypatch.setenv("HEMATOVISION_DATA", str(tmp_path / "no-data-here"))
    app = new_app().run()
    assert not app.exception
    message = " ".join(w.value for w in app.warning)
    assert "python -m hematovision_core.data download" in message
    assert "HEMATOVISION_DATA" in message


def test_another_data_folder_is_explored_whole(explorer_env, monkeypatch, tmp_path, small_data):
    data = tmp_path / "data"
    (data / "cells").mkdir(parents=True)
    (data / "pbc").symlink_to(small_data / "pbc")
    for class_dir in (small_data / "pbc").iterdir():
        (data / "cells" / class_dir.name).symlink_to(class_dir)
    monkeypatch.setenv("HEMATOVISION_DATA", str(data))
    app = new_app(ERRORS_TAB).run()
    assert app.selectbox(key="explorer_dataset").value == "pbc"  # the model's own, by default
    app.selectbox(key="explorer_dataset").set_value("cells").run()
    assert not app.exception
    assert app.selectbox(key="explorer_split").options == ["All images"]
    assert any("Not the model's training folder" in c.value for c in app.sidebar.caption)
    assert len(view_buttons(app, "errs")) == 12
