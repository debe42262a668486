"""ood: the out-of-domain guard's scores, fit, threshold and files, on made-up and real data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hematovision_core import ood
from hematovision_core.model_io import ModelFolderError, read_metadata


def test_mahalanobis_scores_match_the_explicit_formula():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    labels = rng.integers(0, 3, size=400)
    features[labels == 1] += 4.0
    whitening, means, weight = ood.fit_gaussians(features, labels, 3)
    # The same distances from the shrunk covariance, inverted directly.
    centred = features - np.stack([features[labels == c].mean(0) for c in range(3)])[labels]
    covariance, same_weight = ood.ledoit_wolf(centred)
    precision = np.linalg.inv(covariance)
    queries = rng.normal(size=(5, 6)) * 3
    expected = [min((q - features[labels == c].mean(0)) @ precision
                    @ (q - features[labels == c].mean(0)) for c in range(3)) for q in queries]
    np.testing.assert_allclose(ood.mahalanobis_scores(queries, whitening, means), expected,
                               rtol=1e-3)
    assert weight == same_weight and 0.0 <= weight < 0.2  # 400 images in 6-d: little shrinkage


def test_ledoit_wolf_shrinks_hard_when_images_are_few_for_the_dimensions():
    rng = np.random.default_rng(1)
    few = rng.normal(size=(20, 200))  # true covariance: the identity
    covariance, weight = ood.ledoit_wolf(few - few.mean(0))
    assert weight > 0.8
    assert np.linalg.matrix_rank(covariance) == 200  # invertible although n < d


def test_energy_is_minus_logsumexp():
    logits = np.array([[2.0, 0.0, -1.0], [0.1, 0.1, 0.1]])
    expected = -np.log(np.exp(logits).sum(axis=1))
    np.testing.assert_allclose(ood.energy_scores(logits), expected)
    assert ood.energy_scores(logits)[0] < ood.energy_scores(logits)[1]  # confident: lower


def test_auroc_counts_pairs_and_half_ties():
    assert ood.auroc([1, 2, 3], [2.5, 4]) == pytest.approx(5 / 6)
    assert ood.auroc([1, 2], [2]) == pytest.approx(0.75)
    assert ood.auroc([1, 2], [5, 6]) == 1.0


def test_threshold_flags_the_chosen_share_of_validation_scores():
    scores = np.arange(1000, dtype=float)
    threshold = ood.threshold_for(scores, 0.05)
    guard = ood.DomainGuard("mahalanobis", threshold, np.eye(2, dtype=np.float32),
                            np.zeros((1, 2), np.float32))
    assert guard.flags(scores).mean() == pytest.approx(0.05, abs=0.002)
    with pytest.raises(ValueError):
        ood.threshold_for(np.zeros(0))


def make_fields(shared_data, target):
    """target/<CLASS>/: symlinks to 2 real whole smear fields of two classes (another lab)."""
    for label in ("EOSINOPHIL", "NEUTROPHIL"):
        (target / label).mkdir(parents=True)
        for path in sorted((shared_data / "blood-cells" / "TRAIN" / label).iterdir())[:2]:
            (target / label / path.name).symlink_to(path)
    return target


@pytest.fixture(scope="module")
def guarded_folder(owning_model_folder, small_data, shared_data, tmp_path_factory):
    """The small-data tiny model with a guard fitted on its real PBC images."""
    from hematovision_core.ood_fit import fit_model_guard
    from hematovision_core.predict import Classifier

    folder = shutil.copytree(owning_model_folder, tmp_path_factory.mktemp("guarded") / "tiny")
    fields = make_fields(shared_data, tmp_path_factory.mktemp("fields"))
    guard, record = fit_model_guard(Classifier.load(folder), small_data / "pbc",
                                    tmp_path_factory.mktemp("cache"), outside=fields)
    ood.save_guard(folder, guard, record)
    return folder, guard, record


def test_guard_fit_on_real_images_is_stored_checksummed_and_loaded_real_data(guarded_folder):
    from hematovision_core.predict import Classifier

    folder, guard, record = guarded_folder
    metadata = read_metadata(folder)  # model.keras, model.onnx and ood.npz all match
    assert metadata["ood"]["score"] in ood.SCORES and metadata["ood"]["file"] == "ood.npz"
    assert metadata["ood"]["threshold"] == guard.threshold
    assert set(record["auroc"]) == set(ood.SCORES)
    assert record["outside"].endswith("4 images")
    assert "3 training images" in record["fit_on"]  # 1 train image per class in small_data
    assert set(record["flag_rates"]) == {"validation", "outside", "test"}
    loaded = Classifier.load(folder)
    assert loaded.guard is not None and loaded.guard.score_name == guard.score_name
    np.testing.assert_array_equal(loaded.guard.whitening, guard.whitening)


def test_every_prediction_carries_the_verdict_and_its_score_real_data(guarded_folder,
                                                                      small_data):
    from hematovision_core.predict import Classifier

    folder, guard, _ = guarded_folder
    images = sorted((small_data / "pbc" / "neutrophil").iterdir())[:2]
    predictions = Classifier.load(folder).classify(images)
    for prediction in predictions:
        assert isinstance(prediction.out_of_domain, bool)
        assert prediction.out_of_domain == (prediction.ood_score > guard.threshold)


def test_a_model_without_a_guard_still_classifies_with_no_verdict_real_data(tiny_model_folder,
                                                                            small_data):
    from hematovision_core.predict import Classifier

    classifier = Classifier.load(tiny_model_folder)
    assert classifier.guard is None
    prediction = classifier.classify([next((small_data / "pbc" / "neutrophil").iterdir())])[0]
    assert prediction.out_of_domain is None and prediction.ood_score is None


def test_a_changed_guard_file_is_refused(guarded_folder, tmp_path):
    folder = shutil.copytree(guarded_folder[0], tmp_path / "model")
    with np.load(folder / "ood.npz") as arrays:
        np.savez(folder / "ood.npz", whitening=arrays["whitening"] * 2,
                 whitened_means=arrays["whitened_means"])
    with pytest.raises(ModelFolderError, match="ood.npz"):
        read_metadata(folder)
    metadata = json.loads((folder / "model.json").read_text())
    with pytest.raises(ModelFolderError, match="ood.npz"):
        ood.load_guard(folder, metadata)
