"""recalibrate: grouped folds keep a smear's views together; the cross-validated temperature is
honest on logits whose true temperature is known; reliability bins add up."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hematovision_core.calibration import apply_temperature
from hematovision_core.metrics import expected_calibration_error, reliability_bins
from hematovision_core.model_io import write_json
from hematovision_core.recalibrate import (
    class_balanced_weights,
    cross_validated,
    fit_platt_top,
    grouped_folds,
    platt_top,
    read_out_of_fold,
    recalibrate_crossval,
)


def sampled(count: int, temperature: float, seed: int = 0):
    """Logits and labels drawn so that softmax(logits / temperature) is exactly calibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(count, 4))
    probabilities = apply_temperature(logits, temperature)
    labels = np.array([rng.choice(4, p=row / row.sum()) for row in probabilities])
    return logits, labels


def test_grouped_folds_keep_each_group_in_one_fold():
    groups = np.repeat(np.arange(28), 9)  # 28 smears, 9 views each
    folds = grouped_folds(groups)
    for group in range(28):
        assert len(set(folds[groups == group])) == 1
    assert set(folds) == set(range(5))


def test_cross_validated_temperature_recovers_an_underconfident_models_fix():
    # The model's logits are 2.5 times too small (label smoothing does this): T = 0.4 fixes it.
    logits, labels = sampled(3000, 0.4)
    held_out, temperatures = cross_validated(logits, labels, np.arange(len(labels)) // 10)
    assert all(t == pytest.approx(0.4, rel=0.15) for t in temperatures)
    assert expected_calibration_error(labels, held_out) < 0.03
    assert expected_calibration_error(labels, apply_temperature(logits, 1.0)) > 0.1


def test_reliability_bins_count_every_image_once():
    logits, labels = sampled(500, 1.0, seed=1)
    bins = reliability_bins(labels, apply_temperature(logits, 1.0), bins=10)
    assert sum(b["n"] for b in bins) == 500
    for b in bins:
        assert b["low"] < b["confidence"] <= b["high"] and 0.0 <= b["accuracy"] <= 1.0


def test_class_balanced_ece_weighs_each_class_the_same():
    # 90 confident right answers of class 0, 10 confident wrong ones of class 1.
    probabilities = np.tile([[0.9, 0.1]], (100, 1)).astype(np.float32)
    labels = np.array([0] * 90 + [1] * 10)
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.0, abs=1e-6)
    weights = class_balanced_weights(labels, 2)
    assert weights[labels == 0].sum() == pytest.approx(weights[labels == 1].sum())
    # Balanced: half the weight is right, half wrong, all at 0.9 -> gap 0.4.
    assert expected_calibration_error(labels, probabilities, sample_weight=weights) == \
        pytest.approx(0.4, abs=1e-6)


def test_platt_top_keeps_the_winner_and_sums_to_one():
    logits, labels = sampled(400, 0.5, seed=2)
    a, b = fit_platt_top(logits, labels)
    out = platt_top(logits, a, b)
    assert np.array_equal(out.argmax(axis=1), logits.argmax(axis=1))
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert a > 1.0  # logits too small by 2: the top label needs sharpening


class FakeClassifier:
    classes = ["a", "b", "c", "d"]
    temperature = 1.0
    folder = None
    metadata: dict = {}
    model_folder = SimpleNamespace(manifest=None, dataset=None)  # no split manifest: no test


def crossval_folder(tmp_path, with_logits=True):
    logits, labels = sampled(500, 0.5, seed=4)
    rows = [{"path": f"x/{i}.jpg", "fold": i % 5, "label": "abcd"[label], "predicted": "a",
             "confidence": 0.5, **({"logits": row.tolist()} if with_logits else {})}
            for i, (row, label) in enumerate(zip(logits, labels))]
    write_json(tmp_path / "crossval.json", {"folds": 5, "training_options": ["--tta", "none"],
                                            "predictions": rows})
    return tmp_path


def test_crossval_temperature_is_fit_on_out_of_fold_logits_and_nested_by_fold(tmp_path):
    folder = crossval_folder(tmp_path)
    oof = read_out_of_fold(folder, FakeClassifier.classes)
    assert oof.logits.shape == (500, 4) and set(oof.folds) == set(range(5))
    record = recalibrate_crossval(FakeClassifier(), folder, tmp_path, tmp_path)
    assert record["temperature"] == pytest.approx(0.5, rel=0.15)
    assert len(record["fold_temperatures"]) == 5
    assert record["cross_validated_ece"] < record["out_of_fold_ece_before"]
    assert sum(b["n"] for b in record["reliability"]) == 500
    assert "--folds 5 --tta none" in record["crossval_command"]
    assert record["two_parameter"]["cross_validated_ece"] >= 0


def test_crossval_without_logits_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no out-of-fold logits"):
        read_out_of_fold(crossval_folder(tmp_path, with_logits=False), FakeClassifier.classes)
