"""Which images a quiz may use: the model's held-out split, or folders it never trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from hematovision_core import explorer, quiz_pool
from hematovision_core.model_io import ModelFolder

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_a_model_started_from_another_has_seen_both_datasets():
    pbc = ModelFolder.read(MODELS / "pbc-8class")
    smears = ModelFolder.read(MODELS / "blood-cells-4class")
    assert quiz_pool.trained_on(pbc) == {"pbc"}
    assert quiz_pool.trained_on(smears) == {"blood-cells/TRAIN",
                                                                         "pbc"}


def test_only_never_seen_folders_sharing_a_class_are_offered(shared_data, tmp_path):
    datasets = explorer.list_datasets(shared_data)
    assert set(datasets) >= {"pbc", "blood-cells/TRAIN"}
    pbc = ModelFolder.read(MODELS / "pbc-8class")
    assert quiz_pool.unseen_datasets(pbc, datasets,
                                     shared_data) == ["blood-cells/TRAIN"]
    smears = ModelFolder.read(MODELS / "blood-cells-4class")
    assert quiz_pool.unseen_datasets(smears, datasets,
                                     shared_data) == []
    # Without the model it started from at hand, PBC counts as never seen.
    alone = tmp_path / "models" / "blood-cells-4class"
    shutil.copytree(MODELS / "blood-cells-4class", alone)
    assert quiz_pool.unseen_datasets(ModelFolder.from_metadata(smears.metadata, alone), datasets,
                                     shared_data) == ["pbc"]
    # A model trained on the whole data folder has seen everything in it.
    everything = ModelFolder.from_metadata(dict(pbc.metadata, data={"dataset": "."}))
    assert quiz_pool.unseen_datasets(everything, datasets, shared_data) == []


def test_a_folder_without_the_models_classes_is_not_offered(tmp_path):
    for folder in ("lab-b/BASOPHIL", "lab-c/Neutrophil", "lab-d/neutrophil"):
        (tmp_path / folder).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "lab-b/BASOPHIL/a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "lab-c/Neutrophil/a.jpg")
    # lab-d has the class folder but no image in it
    metadata = {"classes": ["eosinophil", "neutrophil"], "data": {"dataset": "pbc"}}
    datasets = explorer.list_datasets(tmp_path)
    assert quiz_pool.unseen_datasets(ModelFolder.from_metadata(metadata), datasets,
                                     tmp_path) == ["lab-c"]


def test_folder_pool_holds_every_image_of_the_models_classes(shared_data):
    root = shared_data / "blood-cells" / "TRAIN"
    pool = quiz_pool.folder_pool(root, shared_data, ["eosinophil", "lymphocyte", "neutrophil"])
    counts = {label: sum(c.truth == label for c in pool) for label in ("eosinophil", "lymphocyte",
                                                                       "neutrophil", "monocyte")}
    assert counts == {"eosinophil": 75, "lymphocyte": 27, "neutrophil": 159, "monocyte": 0}
    assert all(c.image_id.startswith("blood-cells/TRAIN/") and c.path.is_file() for c in pool)
    assert quiz_pool.image_path(shared_data, pool[0].image_id).resolve() == pool[0].path.resolve()


def test_the_sample_is_fixed_and_capped_per_class(shared_data):
    pool = quiz_pool.folder_pool(shared_data / "blood-cells" / "TRAIN", shared_data,
                                 ["eosinophil", "monocyte", "neutrophil"])
    sample = quiz_pool.sample_per_class(pool, 20)
    counts = {label: sum(c.truth == label for c in sample) for label in ("eosinophil", "monocyte",
                                                                         "neutrophil")}
    assert counts == {"eosinophil": 20, "monocyte": 16, "neutrophil": 20}
    assert sample == quiz_pool.sample_per_class(list(reversed(pool)), 20)
    assert {c.image_id for c in sample} <= {c.image_id for c in pool}


def test_predict_sample_answers_each_readable_image(tiny_classifier, shared_data, tmp_path):
    everything = quiz_pool.folder_pool(shared_data / "blood-cells" / "TRAIN", shared_data,
                                       tiny_classifier.classes)
    pool = [c for label in tiny_classifier.classes
            for c in [c for c in everything if c.truth == label][:2]]  # 2 a class, and:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    pool.append(quiz_pool.Candidate("zz/broken.jpg", broken, "eosinophil"))
    seen = []
    predicted = quiz_pool.predict_sample(tiny_classifier, pool, per_class=3,
                                         progress=lambda done, total: seen.append((done, total)))
    assert len(predicted) == 6 and all(c.image_id != "zz/broken.jpg" for c in predicted)
    assert all(c.predicted in tiny_classifier.classes and 0 < c.confidence <= 1 for c in predicted)
    assert seen[-1] == (7, 7)  # the broken image was in the sample, and left out
    json.dumps([c.image_id for c in predicted])  # ids stay plain strings, fit for storage
