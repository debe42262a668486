"""Model build, output shape, the flat graph Grad-CAM needs, and the model folder round trip."""

import json

import keras
import numpy as np
import pytest

from hematovision_core.model import FEATURE_CUT_LAYER, LAST_CONV_LAYER, build_classifier, set_trainable_top, split_at
from hematovision_core.model_io import ModelFolderError, read_metadata
from hematovision_core.predict import Classifier


def test_build_classifier_is_one_flat_graph():
    model = build_classifier(5, weights=None, input_size=96)
    assert model.output.shape == (None, 5)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)  # no nested base
    assert model.get_layer(LAST_CONV_LAYER).output.shape == (None, 3, 3, 1280)
    out = model(np.zeros((2, 96, 96, 3), np.float32))
    assert np.allclose(np.asarray(out).sum(axis=1), 1.0, atol=1e-5)


def test_build_refuses_single_class():
    with pytest.raises(ValueError, match="at least 2"):
        build_classifier(1, weights=None)


def test_split_at_composes_to_the_full_model():
    model = build_classifier(3, weights=None, input_size=96)
    bottom, top = split_at(model, FEATURE_CUT_LAYER)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32)
    assert np.allclose(top(bottom(x)), model(x), atol=1e-5)


def test_set_trainable_top_keeps_batch_norm_frozen():
    model = build_classifier(3, weights=None, input_size=96)
    set_trainable_top(model, "block_11_expand")
    assert model.get_layer("block_11_expand").trainable
    assert not model.get_layer("block_11_expand_BN").trainable
    assert not model.get_layer("block_10_expand").trainable
    set_trainable_top(model, None)
    assert [l.name for l in model.layers if l.trainable and l.weights] == ["head_logits"]


def test_imagenet_weights_load_offline():
    model = build_classifier(8, weights="imagenet")
    assert model.count_params() > 2_250_000


def test_save_load_round_trip_gives_same_predictions(tiny_model_folder, tiny_classifier):
    x = np.random.default_rng(1).uniform(-1, 1, (3, 96, 96, 3)).astype(np.float32)
    again = Classifier.load(tiny_model_folder)
    assert np.allclose(again.probabilities(x), tiny_classifier.probabilities(x), atol=1e-6)
    predictions = again.classify_arrays(x)
    assert len(predictions) == 3
    for p in predictions:
        assert p.label == again.classes[p.class_index]
        assert p.confidence == pytest.approx(float(p.probabilities.max()))
        assert p.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_loading_refuses_missing_or_mismatched_files(tiny_model_folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_folder, broken)
    (broken / "model.json").unlink()
    with pytest.raises(ModelFolderError, match="model.json is missing"):
        Classifier.load(broken)

    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_model_folder, tampered)
    with open(tampered / "model.keras", "ab") as f:
        f.write(b"extra bytes")
    with pytest.raises(ModelFolderError, match="checksum"):
        Classifier.load(tampered)

    wrong_classes = tmp_path / "wrong"
    shutil.copytree(tiny_model_folder, wrong_classes)
    metadata = json.loads((wrong_classes / "model.json").read_text())
    metadata["classes"].append("monocyte")
    metadata["display_names"].append("Monocyte")
    (wrong_classes / "model.json").write_text(json.dumps(metadata))
    read_metadata(wrong_classes)  # the files match ...
    with pytest.raises(ModelFolderError, match="3 outputs"):
        Classifier.load(wrong_classes)  # ... but the model has 3 outputs, not 4


def test_a_model_folder_is_read_and_hashed_once_per_version(tiny_model_folder, tmp_path,
                                                            monkeypatch):
    """`ModelFolder.read`: model.json parsed and model.keras / model.onnx hashed once, however
    many pages, loaders and workers ask; a changed file is read again."""
    import hashlib
    import shutil

    from hematovision_core import model_io
    from hematovision_core.model_io import ModelFolder

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    counts = {"sha256": 0, "parse": 0}
    sha256, read_json = hashlib.sha256, model_io.read_json
    monkeypatch.setattr(model_io, "hashlib", type("CountingHashlib", (), {"sha256": staticmethod(
        lambda *args: counts.__setitem__("sha256", counts["sha256"] + 1) or sha256(*args))}))
    monkeypatch.setattr(model_io, "read_json", lambda path: counts.__setitem__(
        "parse", counts["parse"] + 1) or read_json(path))

    first = ModelFolder.read(folder)
    assert counts == {"sha256": 2, "parse": 1}  # model.keras and model.onnx, model.json
    Classifier.load(folder)
    read_metadata(folder)
    model_io.list_model_folders(tmp_path)
    assert ModelFolder.read(folder) is first and counts == {"sha256": 2, "parse": 1}
    assert (first.name, first.classes, first.display_names) == (
        "tiny-3class", ("eosinophil", "lymphocyte", "neutrophil"),
        ("Eosinophil", "Lymphocyte", "Neutrophil"))
    assert first.dataset is None and first.manifest is None  # trained on no dataset folder here

    metadata = read_metadata(folder)  # a copy: changing it changes no reader's record
    metadata["data"] = {"dataset": "pbc", "split_manifest": "split.csv"}
    assert first.dataset is None
    model_io.write_json(folder / "model.json", metadata)
    (folder / "split.csv").write_text("path,label,split,sha1\n")
    again = ModelFolder.read(folder)
    assert counts["parse"] == 2 and counts["sha256"] == 2  # re-read; unchanged files not rehashed
    assert again.dataset == "pbc" and again.manifest == folder / "split.csv"
