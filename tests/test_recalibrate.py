"""recalibrate: grouped folds keep a smear's views together; the cross-validated temperature is
honest on logits whose true temperature is known; reliability bins add up."""

from __future__ import annotations

import numpy as np
import pytest

from hematovision_core.calibration import apply_temperature
from hematovision_core.metrics import expected_calibration_error, reliability_bins
from hematovision_core.recalibrate import cross_validated, grouped_folds


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
