"""The Transfer Learning Lab page through AppTest, with the tiny model on a 12-image folder.

The features are written into the page's cache beforehand (separable synthetic vectors), as a
finished first pass would leave them, so no network runs here; widgets are driven by key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hematovision_core import transfer_features
from hematovision_core.model_io import read_metadata

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE = str(REPO_ROOT / "pages" / "5_Transfer_Learning_Lab.py")
TIMEOUT = 120  # seconds: the first run loads the model


@pytest.fixture
def lab_env(monkeypatch, tmp_path, owning_model_folder, small_data):
    import app_cache

    app_cache.clear()
    monkeypatch.setenv("HEMATOVISION_MODELS", str(owning_model_folder.parent))
    monkeypatch.setenv("HEMATOVISION_DATA", str(small_data))
    monkeypatch.setenv("HEMATOVISION_VAR", str(tmp_path / "var"))
    return tmp_path / "var"


def cache_features(var_dir: Path, small_data: Path, model_folder: Path) -> None:
    """What a finished feature pass leaves in the cache: one file per source."""
    import app_support

    images = transfer_features.list_lab_images(small_data / "pbc", app_support.LAB_PER_CLASS,
                                               app_support.LAB_SAMPLE_SEED)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(images.classes), transfer_features.POOL_WIDTH))
    rows = [images.classes.index(label) for label in images.labels]
    sources = {"imagenet": transfer_features.imagenet_source(),
               "random": transfer_features.FeatureSource("random"),
               "finetuned": transfer_features.finetuned_source(model_folder,
                                                               read_metadata(model_folder))}
    for name, source in sources.items():
        spread = 5.0 if name == "random" else 0.3
        features = centres[rows] + spread * rng.normal(size=(len(rows), centres.shape[1]))
        transfer_features.save(var_dir / "cache", source, images, "none",
                               transfer_features.LabFeatures(name, features.astype(np.float32),
                                                             images.paths, images.labels, ()))


def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(PAGE, default_timeout=TIMEOUT)


def test_lab_offers_the_first_feature_pass_without_starting_it(lab_env):
    app = new_app().run()
    assert not app.exception
    assert app.selectbox(key="lab_dataset").value == "pbc"
    assert app.button(key="lab_compute").label.startswith("Compute the features")
    assert any("12 images of 3 classes" in caption.value for caption in app.caption)
    assert not (lab_env / "cache" / "transfer_lab").exists()  # nothing computed on a page run


def test_lab_trains_heads_live_from_cached_features(lab_env, small_data, owning_model_folder):
    cache_features(lab_env, small_data, owning_model_folder)
    app = new_app().run()
    assert not app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    assert set(metrics) == set(transfer_features.SOURCE_NAMES.values())
    assert metrics["ImageNet weights (frozen)"] == "100.0%"  # separable synthetic features
    assert any("trained on this dataset" in warning.value for warning in app.warning)
    # 4 images a class: at most 2 train (k = 5 by default), the other 2 are scored.
    assert any("Seed 0: 6 training images (5 a class, fewer where a class is small), 6 scored"
               in c.value for c in app.caption)
    app.slider(key="lab_k").set_value(1).run()
    assert not app.exception
    assert any("Seed 0: 3 training images (1 a class), 6 scored" in c.value for c in app.caption)
    app.radio(key="lab_matrix_source").set_value("random").run()
    app.number_input(key="lab_seed").set_value(3).run()
    assert not app.exception
    assert any(c.value.startswith("Seed 3") for c in app.caption)
    assert app.button(key="lab_inside_go")  # the feature-map panel waits for a click


def test_lab_says_when_there_is_no_data(lab_env, monkeypatch, tmp_path):
    monkeypatch.setenv("HEMATOVISION_DATA", str(tmp_path / "nothing-here"))
    app = new_app().run()
    assert not app.exception
    assert any("No images found" in warning.value for warning in app.warning)
