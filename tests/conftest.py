"""Shared fixtures: where the real data lives, and a tiny random-weight model folder.

Tests never train a real model. Tests that read ../shared/data or the shipped models say so in
their names (`real_data`, `shipped_model`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HEMATOVISION_SHARED", REPO_ROOT.parent / "shared"))
SHARED_DATA = SHARED / "data"
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

# Keras reads KERAS_HOME once, at import: point it at a folder holding the offline weights
# (as a symlink to ../shared/weights) before any test imports keras.
if "KERAS_HOME" not in os.environ and (SHARED / "weights" / WEIGHTS_FILE).exists():
    _home = REPO_ROOT / "var" / "keras_home"
    (_home / "models").mkdir(parents=True, exist_ok=True)
    _link = _home / "models" / WEIGHTS_FILE
    if not _link.exists():
        _link.symlink_to((SHARED / "weights" / WEIGHTS_FILE).resolve())
    os.environ["KERAS_HOME"] = str(_home)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY_CLASSES = ["eosinophil", "lymphocyte", "neutrophil"]
TINY_INPUT_SIZE = 96


@pytest.fixture(scope="session", autouse=True)
def heatmap_workers():
    """Stop the heatmap worker processes a test may have started, once the session ends."""
    yield
    from hematovision_core import explain_pool

    explain_pool.shutdown()


@pytest.fixture
def media_managers(monkeypatch) -> list:
    """Every media file manager AppTest makes (one per run), kept so a test can look at the
    files a run stored and sweep them as other sessions' runs would (`remove_orphaned_files`)."""
    from streamlit.testing.v1 import app_test

    managers: list = []

    class KeptManager(app_test.MediaFileManager):
        def __init__(self, storage):
            super().__init__(storage)
            managers.append(self)

    monkeypatch.setattr(app_test, "MediaFileManager", KeptManager)
    return managers


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "pbc").is_dir():
        pytest.skip("../shared/data is not here")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory) -> Path:
    """A 3-class MobileNetV2 with random weights at 96x96, saved as a model folder."""
    import keras

    from hematovision_core.model import build_classifier
    from hematovision_core.model_io import write_model_folder

    keras.utils.set_random_seed(0)
    model = build_classifier(len(TINY_CLASSES), weights=None, input_size=TINY_INPUT_SIZE)
    folder = tmp_path_factory.mktemp("models") / "tiny-3class"
    write_model_folder(model, folder, {
        "name": "tiny-3class",
        "classes": TINY_CLASSES,
        "display_names": [c.title() for c in TINY_CLASSES],
        "input_size": TINY_INPUT_SIZE,
        "preprocessing": "RGB, EXIF orientation, bilinear resize to input_size, x / 127.5 - 1",
        "temperature": 1.0,
        "model_sha256": "",
        "metrics": {},
    })
    return folder


@pytest.fixture(scope="session")
def tiny_keras(tiny_model_folder):
    """The tiny model folder's Keras model (for gradients and checks against the ONNX export)."""
    from hematovision_core.keras_model import KerasClassifier

    return KerasClassifier.load(tiny_model_folder)


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model_folder):
    from hematovision_core.predict import Classifier

    return Classifier.load(tiny_model_folder)


# A small image folder and a model that owns it (explorer, split predictions, thumbnails):
# symlinks to 4 real PBC images per class laid out as `<data>/pbc/<class>/<file>`, and the tiny
# model copied with a split manifest and `data.dataset = "pbc"`, so the folder is "its own" data.

IMAGES_PER_CLASS = 4
SPLITS = ("train", "val", "test", "test")  # per class: 1 train, 1 val, 2 test images


def make_small_data(shared_data: Path, target: Path) -> Path:
    """`target/pbc/<class>/*.jpg` as symlinks to real images; returns `target`."""
    for label in TINY_CLASSES:
        sources = sorted((shared_data / "pbc" / label).glob("*.jpg"))[:IMAGES_PER_CLASS]
        folder = target / "pbc" / label
        folder.mkdir(parents=True, exist_ok=True)
        for source in sources:
            (folder / source.name).symlink_to(source)
    return target


def make_owning_model(tiny_model_folder: Path, data_dir: Path, target: Path) -> Path:
    """A copy of the tiny model folder whose model.json and split.csv describe `data_dir/pbc`."""
    shutil.copytree(tiny_model_folder, target)
    rows = ["path,label,split,sha1"]
    for label in TINY_CLASSES:
        files = sorted((data_dir / "pbc" / label).iterdir())
        for split, path in zip(SPLITS, files):
            rows.append(f"{label}/{path.name},{label},{split},")
    (target / "split.csv").write_text("\n".join(rows) + "\n")
    metadata = json.loads((target / "model.json").read_text())
    metadata["data"] = {"dataset": "pbc", "split_manifest": "split.csv"}
    (target / "model.json").write_text(json.dumps(metadata))
    return target


@pytest.fixture(scope="session")
def small_data(shared_data, tmp_path_factory) -> Path:
    return make_small_data(shared_data, tmp_path_factory.mktemp("explorer-data"))


@pytest.fixture(scope="session")
def owning_model_folder(tiny_model_folder, small_data, tmp_path_factory) -> Path:
    return make_owning_model(tiny_model_folder, small_data,
                             tmp_path_factory.mktemp("explorer-models") / "tiny-3class")


@pytest.fixture(scope="session")
def owning_classifier(owning_model_folder, tiny_classifier):
    """The tiny classifier's served model with the copy's metadata."""
    from hematovision_core.predict import Classifier

    metadata = json.loads((owning_model_folder / "model.json").read_text())
    return Classifier(tiny_classifier.runtime, metadata, owning_model_folder)


# ---- answer databases: SQLite here, PostgreSQL when HEMATOVISION_TEST_POSTGRES_URL is set ----

POSTGRES_URL_VARIABLE = "HEMATOVISION_TEST_POSTGRES_URL"


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database of its own for one test, dropped afterwards.

    HEMATOVISION_TEST_POSTGRES_URL names a database on a server where its user may create
    databases (`.ci/run` starts one). Unset: the test is skipped; set but unusable: it fails.
    """
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from hematovision_core import database

    base = os.environ.get(POSTGRES_URL_VARIABLE)
    if not base:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set")
    name = f"hv_test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    quoted = admin.dialect.identifier_preparer.quote(name)
    with admin.connect() as connection:  # no Core construct for CREATE DATABASE
        connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        database.dispose_engine(url)
        with admin.connect() as connection:  # FORCE: a killed test's sessions go too
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """The URL of an empty answers database of this test's own, on each backend in turn."""
    from hematovision_core import database

    if request.param == "postgres":
        yield request.getfixturevalue("postgres_url")
        return
    url = f"sqlite:///{tmp_path / 'var' / 'quiz.sqlite3'}"
    yield url
    database.dispose_engine(url)
