"""Predictions and features for a split: right values, computed once, never from another model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hematovision_core import explorer, split_predictions
from hematovision_core.calibration import apply_temperature
from hematovision_core.predict import Classifier
from hematovision_core.preprocessing import preprocess

from conftest import make_small_data


@pytest.fixture
def model_runs(monkeypatch) -> list[int]:
    """Counts the images each call of the model's batched forward pass was given."""
    calls: list[int] = []
    original = split_predictions.run_model

    def counting(classifier, paths, progress=None, batch_size=split_predictions.BATCH_SIZE):
        calls.append(len(paths))
        return original(classifier, paths, progress, batch_size)

    monkeypatch.setattr(split_predictions, "run_model", counting)
    return calls


def test_results_match_the_classifier_and_have_a_map(owning_classifier, tiny_keras, small_data,
                                                     tmp_path):
    source = explorer.split_source(small_data, owning_classifier, "pbc", explorer.ALL)
    progress = []
    result = split_predictions.predictions_for(tmp_path, owning_classifier, source,
                                               progress=lambda done, total: progress.append(done))
    assert result.paths == source.paths and result.labels == source.labels
    assert progress[-1] == len(source.paths)
    # Reference: the original Keras model (TensorFlow) on `preprocess`'s arrays.
    batch = np.stack([preprocess(source.root / path, owning_classifier.input_size)
                      for path in source.paths])
    logits = tiny_keras.logits_model(batch, training=False).numpy()
    expected = apply_temperature(logits, owning_classifier.temperature)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-4)
    assert result.features().shape == (12, 1280)
    assert result.coords.shape == (12, 2) and np.isfinite(result.coords).all()


def test_second_call_reads_the_cache_without_running_the_model(owning_classifier, small_data,
                                                               tmp_path, model_runs):
    source = explorer.split_source(small_data, owning_classifier, "pbc", "test")
    first = split_predictions.predictions_for(tmp_path, owning_classifier, source)
    second = split_predictions.predictions_for(tmp_path, owning_classifier, source)
    assert model_runs == [6]
    np.testing.assert_array_equal(first.logits, second.logits)
    assert split_predictions.load_cached(tmp_path, owning_classifier, source) is not None


def test_a_cache_from_another_model_is_never_reused(owning_classifier, small_data, tmp_path,
                                                    model_runs):
    source = explorer.split_source(small_data, owning_classifier, "pbc", "test")
    split_predictions.predictions_for(tmp_path, owning_classifier, source)
    # Same architecture and layers, but another model file (another checksum).
    other = Classifier(owning_classifier.runtime,
                       {**owning_classifier.metadata, "model_sha256": "0" * 64})
    assert split_predictions.load_cached(tmp_path, other, source) is None
    split_predictions.predictions_for(tmp_path, other, source)
    assert model_runs == [6, 6]
    # The same weights looking at another part of each image (a smear model's crop) differ too.
    cropped = Classifier(owning_classifier.runtime,
                         {**owning_classifier.metadata, "crop": "white-cell"})
    assert split_predictions.load_cached(tmp_path, cropped, source) is None
    averaged = Classifier(owning_classifier.runtime, {**owning_classifier.metadata, "tta": "dihedral"})
    assert split_predictions.load_cached(tmp_path, averaged, source) is None


def test_a_cache_from_another_data_folder_is_never_reused(owning_classifier, small_data,
                                                          shared_data, tmp_path, model_runs):
    source = explorer.split_source(small_data, owning_classifier, "pbc", explorer.ALL)
    split_predictions.predictions_for(tmp_path / "cache", owning_classifier, source)
    copy = make_small_data(shared_data, tmp_path / "copy")  # the same files, another folder
    moved = explorer.split_source(copy, owning_classifier, "pbc", explorer.ALL)
    assert moved.paths == source.paths
    assert split_predictions.load_cached(tmp_path / "cache", owning_classifier, moved) is None
    # Another split of the same folder has its own cache too.
    test = explorer.split_source(small_data, owning_classifier, "pbc", "test")
    assert split_predictions.load_cached(tmp_path / "cache", owning_classifier, test) is None


def test_unreadable_files_are_skipped_not_fatal(owning_classifier, small_data, tmp_path):
    source = explorer.split_source(small_data, owning_classifier, "pbc", "test")
    broken = tmp_path / "data"
    (broken / "eosinophil").mkdir(parents=True)
    (broken / "eosinophil" / "broken.jpg").write_bytes(b"not a jpeg")
    mixed = replace(source, root=small_data / "pbc",
                    paths=source.paths + ("../../data/eosinophil/missing.jpg",),
                    labels=source.labels + ("eosinophil",))
    result = split_predictions.predictions_for(tmp_path / "cache", owning_classifier, mixed)
    assert result.paths == source.paths
    assert result.skipped == ("../../data/eosinophil/missing.jpg",)


def test_a_second_writer_keeps_the_first_result(owning_classifier, small_data, tmp_path):
    source = explorer.split_source(small_data, owning_classifier, "pbc", "test")
    first = split_predictions.compute(tmp_path, owning_classifier, source)
    second = split_predictions.compute(tmp_path, owning_classifier, source)  # e.g. another session
    assert second.folder == first.folder
    assert [p.name for p in first.folder.parent.iterdir()] == [first.folder.name]  # no leftovers
