"""Fixtures shared by the explorer's tests: a small image folder and a model that owns it.

The folder holds symlinks to a few real PBC images (../shared/data), 4 per class, laid out as
`<data>/pbc/<class>/<file>`; the model is the tiny random-weight one from conftest, copied with
a split manifest and `data.dataset = "pbc"`, so the folder is "its own" data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import TINY_CLASSES

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
    """The tiny classifier's model with the copy's metadata (loading it again would be slow)."""
    from hematovision_core.predict import Classifier

    metadata = json.loads((owning_model_folder / "model.json").read_text())
    return Classifier(tiny_classifier.model, metadata, owning_model_folder)
